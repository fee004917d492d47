#!/usr/bin/env bash
# The JSON toolkit (PortcullisJSON) against FoundationEssentials' JSONDecoder on the adapter's
# per-event decoding, and the request-body scan on five bodies (80 B to 63 KiB); release build,
# one run. Usage: Benchmarks/json.sh [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x /opt/swift/usr/bin/swift ] && export PATH=/opt/swift/usr/bin:$PATH
swift build -c release --product JSONBench >/dev/null
"$(swift build -c release --show-bin-path)/JSONBench" "${1:-20000}"
