#!/usr/bin/env bash
# Instructions per proxied request (valgrind --tool=callgrind: repeatable whatever else the machine
# does), for one gateway configuration: `plain` (a provider route), `alias` (an alias route, model
# rewritten) or `limit` (the in-memory limiter with requests and tokens per minute).
# Usage: Benchmarks/instructions.sh [plain|alias|limit]... (default: all three)
# Each figure is (instructions for 1200 requests − for 200) / 1000, so start-up cancels out.
set -euo pipefail
cd "$(dirname "$0")/.."
Scripts/bootstrap.sh valgrind python3 >/dev/null
[ -x /opt/swift/usr/bin/swift ] && export PATH=/opt/swift/usr/bin:$PATH
swift build -c release --product portcullis >/dev/null
swift build -c release --product FakeProvider >/dev/null
BIN=$(swift build -c release --show-bin-path)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

run() {  # kind requests → total instructions of the gateway process
    local kind=$1 n=$2 fp gp routes extra=""
    fp=$(free_port); gp=$(free_port)
    "$BIN/FakeProvider" --listen "127.0.0.1:$fp" >/dev/null 2>&1 & local fpid=$!
    routes="routes: [ { path: /v1/chat/completions, provider: fake } ]"
    case $kind in
        alias) routes="routes: [ { path: /v1/chat/completions } ]"
               extra="models: { chat-default: { tiers: { s: [ { target: fake/gpt-4o-mini } ] }, default_tier: s } }" ;;
        limit) extra="limits: { default_tier: pro, tiers: { pro: { requests_per_minute: 100000000, tokens_per_minute: 100000000000 } } }" ;;
    esac
    printf 'server: { listen: ["127.0.0.1:%s"], workers: 1 }\nproviders: { fake: { base_url: "http://127.0.0.1:%s" } }\n%s\n%s\nlog: { level: warn, access: false }\n' \
        "$gp" "$fp" "$extra" "$routes" > "$TMP/c.yaml"
    rm -f "$TMP"/out.*
    valgrind --tool=callgrind --callgrind-out-file="$TMP/out.%p" "$BIN/portcullis" --config "$TMP/c.yaml" >/dev/null 2>&1 & local gpid=$!
    for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$gp") 2>/dev/null && break; sleep 0.2; done
    python3 Benchmarks/instr_client.py "$gp" "$n"
    kill -TERM "$gpid"; wait "$gpid" 2>/dev/null || true; kill "$fpid"
    grep -h "^totals:\|^summary:" "$TMP"/out.* | head -1 | awk '{print $2}'
}

for kind in "${@:-plain alias limit}"; do
    for k in $kind; do
        a=$(run "$k" 200); b=$(run "$k" 1200)
        echo "$k: $(( (b - a) / 1000 )) instructions per request"
    done
done
