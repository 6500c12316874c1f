#!/usr/bin/env bash
# Installs this checkout as the modelferry gateway service on a Raspberry Pi (or any
# systemd machine with Node.js >= 20.19): code in /opt/modelferry, config in
# /etc/modelferry/config.yaml (kept if present), state in /var/lib/modelferry, blobs in
# /var/cache/modelferry. Run as root from the repository: sudo systemd/install.sh
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
prefix=/opt/modelferry

if [ "$(id -u)" != 0 ]; then echo "install.sh: run as root (sudo)" >&2; exit 1; fi
command -v node >/dev/null || { echo "install.sh: Node.js >= 20.19 is required" >&2; exit 1; }

mkdir -p "$prefix"
# The compiled package: built here if the checkout has not been built yet (npm install does).
[ -f "$here/dist/cli/main.js" ] || (cd "$here" && npm run build)
# Copy the package, not the developer's working files.
for item in package.json package-lock.json dist config systemd README.md; do
  rm -rf "${prefix:?}/$item"
  cp -a "$here/$item" "$prefix/"
done
# Run-time dependencies only; no lifecycle scripts (the package is already built).
(cd "$prefix" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund)

install -d -m 0755 /etc/modelferry
if [ ! -e /etc/modelferry/config.yaml ]; then
  # Fresh random tokens in place of the example's placeholders.
  node -e '
    const fs = require("fs"), crypto = require("crypto");
    const text = fs.readFileSync(process.argv[1], "utf8")
      .replace(/replace-with-a-long-random-secret-\d/g, () => crypto.randomBytes(24).toString("hex"));
    fs.writeFileSync("/etc/modelferry/config.yaml", text, { mode: 0o600 });
  ' "$here/config/example.yaml"
  echo "install.sh: wrote /etc/modelferry/config.yaml with new tokens (root-only); add trust keys there"
fi

install -m 0644 "$here/systemd/modelferry.service" /etc/systemd/system/modelferry.service
systemctl daemon-reload
systemctl enable modelferry.service
systemctl restart modelferry.service
systemctl --no-pager --lines=5 status modelferry.service || true
echo "install.sh: logs with: journalctl -u modelferry -f"
