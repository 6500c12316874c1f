#!/usr/bin/env bash
# Measures the client's design limits on the host (not part of npm test: it needs valgrind).
#   firmware/host/measure.sh
# Builds the core without sanitizers (-O2), runs the real gateway on loopback, pushes a
# model filling a device-sized slot, and has modelferry-sim install it:
#   - the client's static state (sizeof(mf_client)) and its peak heap (report buffer +
#     cJSON's peak, counted by hooks), from `modelferry-sim --stats`;
#   - the whole simulator process's peak heap under valgrind massif (libcurl and glibc
#     included: an upper bound the device's esp_http_client does not reach);
#   - the largest stack frames of the core (-fstack-usage).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build="$root/firmware/build/measure"
cmake -S "$here" -B "$build" -DMF_SANITIZE=OFF >/dev/null
cmake --build "$build" -j2 --target modelferry-sim >/dev/null
sim="$build/modelferry-sim"

work=$(mktemp -d)
gateway_pid=
cleanup() { [ -n "$gateway_pid" ] && kill "$gateway_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
token=measure-token-0123456789abcdef
cat > "$work/config.yaml" <<YAML
http: { host: 127.0.0.1, port: $port }
paths: { state: $work/state, cache: $work/cache }
mdns: { enabled: false }
log: { level: warn }
auth: { tokens: [ { name: m, token: "$token", scopes: [push, admin] } ] }
YAML
[ -f "$root/dist/cli/main.js" ] || (cd "$root" && npm run build >/dev/null)
node "$root/dist/cli/main.js" serve --config "$work/config.yaml" >"$work/gateway.log" 2>&1 &
gateway_pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.2; done

# A real program (one method, aten::add.out) padded with segment data to what a device slot
# holds: 3,076,096 bytes. Built by the tests' program builder.
size=3076096
(cd "$root" && node --import tsx --input-type=module \
  -e "import { makeProgram } from './test/helpers/programs.ts'; process.stdout.write(makeProgram($size));") >"$work/model.pte"
curl -sf -X PUT -H "Authorization: Bearer $token" --data-binary @"$work/model.pte" \
  "http://127.0.0.1:$port/v1/models/big/1" >/dev/null
curl -sf -X PUT -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
  -d '{"model":"big","version":"1"}' "http://127.0.0.1:$port/v1/assignments/default" >/dev/null

ops=$(python3 -c 'print(",".join(["aten::add.out"] + ["aten::op%d.out" % i for i in range(63)]))')
echo "== modelferry-sim --stats (64 operators reported)"
"$sim" --mac 02:00:00:00:aa:01 --state-dir "$work/dev1" --gateway "http://127.0.0.1:$port" --once --stats \
  --operators "$ops" --arena-bytes 262144 | grep -E '"(stats|once|active)"'

if command -v valgrind >/dev/null; then
  echo "== valgrind massif, whole simulator process (boot with a full slot, poll, report)"
  valgrind --tool=massif --pages-as-heap=no --massif-out-file="$work/massif.out" \
    "$sim" --mac 02:00:00:00:aa:02 --state-dir "$work/dev2" --gateway "http://127.0.0.1:$port" --once >/dev/null 2>&1
  peak=$(grep -E '^mem_heap_B=' "$work/massif.out" | cut -d= -f2 | sort -n | tail -1)
  extra=$(grep -E '^mem_heap_extra_B=' "$work/massif.out" | cut -d= -f2 | sort -n | tail -1)
  echo "peak heap of the whole process: $peak bytes (+ $extra allocator overhead)"
fi

echo "== largest stack frames of the core and port (-O2, bytes)"
find "$build" -name '*.su' -path '*modelferry.dir*' -exec cat {} + | sort -t$'\t' -k2 -n -r | head -8 |
  awk -F'\t' '{ n = split($1, p, "/"); print $2 "\t" p[n] }'
