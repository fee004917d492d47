#!/usr/bin/env bash
# Benchmarks Portcullis against (a) the fake provider directly and (c) nginx as a plain reverse
# proxy, in one interleaved run on this machine. Writes Benchmarks/RESULTS.md.
# Usage: Benchmarks/run.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
Scripts/bootstrap.sh nginx-light wrk python3 redis-server
[ -x /opt/swift/usr/bin/swift ] && export PATH=/opt/swift/usr/bin:$PATH
swift build -c release --product portcullis >/dev/null
swift build -c release --product FakeProvider >/dev/null
exec python3 Benchmarks/bench.py --bin "$(swift build -c release --show-bin-path)" "$@"
