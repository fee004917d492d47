#!/usr/bin/env bash
# Benchmarks Portcullis against the fake provider directly, nginx, HAProxy and LiteLLM's proxy as plain reverse
# proxies, in one interleaved run on this machine (Benchmarks/RESULTS.md); then 9,000 concurrent
# slow streams through Portcullis and nginx (Benchmarks/STREAMS.md), tenant isolation under a
# flood (Benchmarks/FLOOD.md) and request bodies of 80 B to 61 KiB through Portcullis's plain and
# alias routes and nginx (Benchmarks/BODIES.md).
# Usage: Benchmarks/run.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
Scripts/bootstrap.sh nginx-light haproxy wrk python3 python3-venv redis-server
# LiteLLM's proxy, the Python peer, in its own virtualenv (skipped, and said so, when pip fails).
if [ ! -x .build-bench/litellm/bin/litellm ]; then
    { python3 -m venv .build-bench/litellm && .build-bench/litellm/bin/pip install -q 'litellm[proxy]'; } \
        || echo "run.sh: could not install LiteLLM; benchmarking without it" >&2
fi
[ -x /opt/swift/usr/bin/swift ] && export PATH=/opt/swift/usr/bin:$PATH
BIN=$(Scripts/build-release.sh -q portcullis FakeProvider)
python3 Benchmarks/bench.py --bin "$BIN" "$@"
if [ "${1:-}" = --quick ]; then
    python3 Benchmarks/streams.py --bin "$BIN" --streams 1000 --events 10
    python3 Benchmarks/flood.py --bin "$BIN" --rounds 1 --seconds 4
    python3 Benchmarks/bodies.py --bin "$BIN" --rounds 2 --seconds 2
else
    python3 Benchmarks/streams.py --bin "$BIN" --streams 9000
    python3 Benchmarks/flood.py --bin "$BIN"
    python3 Benchmarks/bodies.py --bin "$BIN"
fi
