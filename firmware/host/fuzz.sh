#!/usr/bin/env bash
# The parsers' random tests at length (the suite runs 20,000 iterations of each):
#   firmware/host/fuzz.sh [ITERATIONS]      (default 2,000,000)
# Runs the sanitizer build of test_dns (mDNS packets) and test_assignment (assignment JSON).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build="$here/../build/host"
cmake -S "$here" -B "$build" >/dev/null
cmake --build "$build" -j2 --target test_dns test_assignment >/dev/null
export MF_FUZZ_ITERATIONS="${1:-2000000}"
"$build/test_dns"
"$build/test_assignment"
