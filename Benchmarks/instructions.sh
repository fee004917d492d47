#!/usr/bin/env bash
# Instructions per proxied request (valgrind --tool=callgrind: repeatable whatever else the machine
# does), for one gateway configuration: `plain` (a provider route), `alias` (an alias route, model
# rewritten), `limit` (the in-memory limiter with requests and tokens per minute) or `full` (JWT
# HS256, the Redis limiter with token settlement, an alias route: the whole mission path).
# `nginx` is the reference: nginx as the plain proxy of RESULTS.md (one process, upstream
# keepalive), the same client and requests, counted the same way. `KIND-sdk` (`sdk` for plain):
# that path with real clients' and providers' heads: the client sends the 18 header lines of the
# OpenAI Python SDK's requests, the fake answers with the 23 OpenAI's API adds. `KIND-tls` (`tls`
# for plain): that path to a provider over TLS (nginx terminating it in front of the fake).
# Usage: Benchmarks/instructions.sh [plain|alias|limit|full|nginx|sdk|tls|KIND-sdk|KIND-tls]... (default: the first five)
# Each figure is (instructions for 1200 requests − for 200) / 1000, so start-up cancels out.
# KEEP=dir keeps the callgrind files (dir/KIND.N.out, N the request count) for callgrind_annotate.
# CACHE=1: cachegrind's cache simulation instead (the host's caches as cachegrind reads them;
# here a 32 KiB, 8-way L1 of 64-byte lines for code and one for data), and beside the
# instructions the L1 misses a request: lines of code fetched (I1) and data lines read or written
# (D1) that were not in the cache, that is, how much a request touches beyond what the L1 holds.
# CONNS=N: the client's requests take turns over N keep-alive connections
# (default 1; 64, as wrk's load has, puts each connection's state out of the cache between its
# requests). KEEP's files are then cachegrind's, for cg_annotate.
set -euo pipefail
cd "$(dirname "$0")/.."
Scripts/bootstrap.sh valgrind python3 redis-server nginx-light >/dev/null
[ -x /opt/swift/usr/bin/swift ] && export PATH=/opt/swift/usr/bin:$PATH
BIN=$(Scripts/build-release.sh -q portcullis FakeProvider)
tool=(--tool=callgrind) out=--callgrind-out-file
[ "${CACHE:-0}" = 1 ] && tool=(--tool=cachegrind --cache-sim=yes) out=--cachegrind-out-file
export INSTR_CONNS=${CONNS:-1}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

run() {  # kind requests → total instructions of the gateway process
    local kind=$1 n=$2 fp gp rp="" routes extra="" token=""
    fp=$(free_port); gp=$(free_port)
    # `KIND-sdk` (and `sdk`, the plain one): real heads. The client sends the OpenAI Python SDK's
    # header lines, the fake answers with those OpenAI's API sends.
    local base=${kind%-sdk} fake_args=()
    [ "$kind" = sdk ] && base=plain
    [ "$base" != "$kind" ] && { export INSTR_CLIENT=sdk; fake_args=(--response-headers openai); }
    "$BIN/FakeProvider" --listen "127.0.0.1:$fp" "${fake_args[@]}" >/dev/null 2>&1 & local fpid=$!
    # `KIND-tls` (`tls` for plain): the provider over TLS. nginx terminates TLS in front of the
    # fake (a certificate for 127.0.0.1 made here, trusted by `ca_file`); its instructions are not
    # counted. The proxy keeps its TLS connection to it, as to a real provider.
    local scheme=http up=$fp tpid="" ca=""
    if [ "$kind" = tls ] || [ "${kind%-tls}" != "$kind" ]; then
        base=${kind%-tls}; [ "$kind" = tls ] && base=plain
        scheme=https; up=$(free_port); ca="$TMP/tls-cert.pem"
        [ -f "$ca" ] || openssl req -x509 -newkey rsa:2048 -nodes -keyout "$TMP/tls-key.pem" -out "$ca" -days 2 \
            -subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1" >/dev/null 2>&1
        printf 'worker_processes 1; daemon off; pid %s/tls.pid; error_log %s/tls-error.log warn;\nevents { worker_connections 4096; }\nhttp { access_log off; client_body_temp_path %s/tls-body; proxy_temp_path %s/tls-proxy;\n upstream fake { server 127.0.0.1:%s; keepalive 64; }\n server { listen 127.0.0.1:%s ssl; ssl_certificate %s; ssl_certificate_key %s/tls-key.pem; keepalive_requests 1000000;\n  location / { proxy_pass http://fake; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off; } } }\n' \
            "$TMP" "$TMP" "$TMP" "$TMP" "$fp" "$up" "$ca" "$TMP" > "$TMP/tls.conf"
        nginx -c "$TMP/tls.conf" -p "$TMP" >/dev/null 2>&1 & tpid=$!
        for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$up") 2>/dev/null && break; sleep 0.2; done
    fi
    routes="routes: [ { path: /v1/chat/completions, provider: fake } ]"
    case $base in
        alias) routes="routes: [ { path: /v1/chat/completions } ]"
               extra="models: { chat-default: { tiers: { s: [ { target: fake/gpt-4o-mini } ] }, default_tier: s } }" ;;
        limit) extra="limits: { default_tier: pro, tiers: { pro: { requests_per_minute: 100000000, tokens_per_minute: 100000000000 } } }" ;;
        full)  rp=$(free_port)
               redis-server --port "$rp" --bind 127.0.0.1 --save "" --appendonly no --daemonize no >/dev/null 2>&1 &
               routes="routes: [ { path: /v1/chat/completions } ]"
               extra="models: { chat-default: { tiers: { pro: [ { target: fake/gpt-4o-mini } ] }, default_tier: pro } }
auth: { jwt: { keys: [ { kid: hs1, alg: HS256, secret_env: BENCH_JWT_SECRET } ] } }
limits: { default_tier: pro, per_user: { requests_per_minute: 100000000 }, tiers: { pro: { requests_per_minute: 100000000, tokens_per_minute: 100000000000 } } }
redis: { url: \"redis://127.0.0.1:$rp\", timeout: 200ms }"
               token=$(python3 - <<'PY'
import base64, hashlib, hmac, json, time
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
si = b64(json.dumps({"alg": "HS256", "kid": "hs1"}).encode()) + "." + b64(json.dumps(
    {"tenant_id": "acme", "sub": "bench", "tier": "pro", "exp": int(time.time()) + 3600}).encode())
print(si + "." + b64(hmac.new(b"benchmark-secret-0123456789abcdef0123456789", si.encode(), hashlib.sha256).digest()))
PY
) ;;
    esac
    rm -f "$TMP"/out.*
    if [ "$base" = nginx ]; then   # the config RESULTS.md's nginx runs, in one process
        conf=$(python3 -c 'import sys; sys.path.insert(0, "Benchmarks"); from bench import nginx_conf
print(nginx_conf(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), master=False, tls_ca=sys.argv[4] or None))' "$TMP" "$gp" "$up" "$ca")
        valgrind "${tool[@]}" "$out=$TMP/out.%p" nginx -c "$conf" -p "$TMP" >/dev/null 2>&1 & local gpid=$!
        for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$gp") 2>/dev/null && break; sleep 0.2; done
        python3 Benchmarks/instr_client.py "$gp" "$n"
        kill -QUIT "$gpid"; wait "$gpid" 2>/dev/null || true; kill "$fpid"
        [ -n "$tpid" ] && { kill -QUIT "$tpid"; wait "$tpid" 2>/dev/null || true; }
        grep -h "^totals:\|^summary:" "$TMP"/out.* | head -1 | cut -d' ' -f2-
        return
    fi
    printf 'server: { listen: ["127.0.0.1:%s"], workers: 1 }\nproviders: { fake: { base_url: "%s://127.0.0.1:%s"%s } }\n%s\n%s\nlog: { level: warn, access: false }\n' \
        "$gp" "$scheme" "$up" "${ca:+, ca_file: $ca}" "$extra" "$routes" > "$TMP/c.yaml"
    BENCH_JWT_SECRET=benchmark-secret-0123456789abcdef0123456789 \
        valgrind "${tool[@]}" "$out=$TMP/out.%p" "$BIN/portcullis" --config "$TMP/c.yaml" >/dev/null 2>&1 & local gpid=$!
    for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$gp") 2>/dev/null && break; sleep 0.2; done
    python3 Benchmarks/instr_client.py "$gp" "$n" $token
    kill -TERM "$gpid"; wait "$gpid" 2>/dev/null || true; kill "$fpid"
    [ -n "$tpid" ] && { kill -QUIT "$tpid"; wait "$tpid" 2>/dev/null || true; }
    [ -n "$rp" ] && { redis-cli -p "$rp" shutdown nosave >/dev/null 2>&1 || true; }
    [ -n "${KEEP:-}" ] && { mkdir -p "$KEEP"; cat "$TMP"/out.* > "$KEEP/$kind.$n.out"; }
    grep -h "^totals:\|^summary:" "$TMP"/out.* | head -1 | cut -d' ' -f2-
}

for kind in "${@:-plain alias limit full nginx}"; do
    for k in $kind; do
        a=$(run "$k" 200); b=$(run "$k" 1200)
        if [ "${CACHE:-0}" = 1 ]; then   # summary: Ir I1mr ILmr Dr D1mr DLmr Dw D1mw DLmw
            read -r -a x <<< "$a"; read -r -a y <<< "$b"
            echo "$k: $(( (y[0] - x[0]) / 1000 )) instructions, L1 misses $(( (y[1] - x[1]) / 1000 )) code" \
                 "+ $(( (y[4] - x[4] + y[7] - x[7]) / 1000 )) data lines per request (${INSTR_CONNS} connection(s))"
        else
            echo "$k: $(( (${b%% *} - ${a%% *}) / 1000 )) instructions per request"
        fi
    done
done
