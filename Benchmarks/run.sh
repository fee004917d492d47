#!/usr/bin/env bash
# Benchmarks Portcullis against the fake provider directly, nginx and HAProxy as plain reverse
# proxies, in one interleaved run on this machine (Benchmarks/RESULTS.md); then 9,000 concurrent
# slow streams through Portcullis and nginx (Benchmarks/STREAMS.md) and tenant isolation under a
# flood (Benchmarks/FLOOD.md).
# Usage: Benchmarks/run.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
Scripts/bootstrap.sh nginx-light haproxy wrk python3 redis-server
[ -x /opt/swift/usr/bin/swift ] && export PATH=/opt/swift/usr/bin:$PATH
swift build -c release --product portcullis >/dev/null
swift build -c release --product FakeProvider >/dev/null
BIN=$(swift build -c release --show-bin-path)
python3 Benchmarks/bench.py --bin "$BIN" "$@"
if [ "${1:-}" = --quick ]; then
    python3 Benchmarks/streams.py --bin "$BIN" --streams 1000 --events 10
    python3 Benchmarks/flood.py --bin "$BIN" --rounds 1 --seconds 4
else
    python3 Benchmarks/streams.py --bin "$BIN" --streams 9000
    python3 Benchmarks/flood.py --bin "$BIN"
fi
