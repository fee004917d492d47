#!/usr/bin/env bash
# Runs the gateway on its embedded demo config (127.0.0.1:8080) in front of the in-repo fake
# provider (127.0.0.1:9000). No Redis, no internet. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
Scripts/bootstrap.sh
[ -x /opt/swift/usr/bin/swift ] && export PATH=/opt/swift/usr/bin:$PATH
BIN=$(Scripts/build-release.sh portcullis FakeProvider)
"$BIN/FakeProvider" --listen 127.0.0.1:9000 --inter-event-delay-ms 150 &
FAKE=$!
trap 'kill $FAKE 2>/dev/null || true' EXIT INT TERM
echo "demo: try  curl -N localhost:8080/v1/chat/completions -d '{\"model\":\"x\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}'" >&2
"$BIN/portcullis" "$@"
