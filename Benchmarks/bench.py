"""Benchmark driver: one run, same machine, interleaved rounds, medians and ratios.

Targets (all on loopback, one worker each so the comparison is per-core):
  direct  – wrk → FakeProvider
  gateway – wrk → Portcullis → FakeProvider
  nginx   – wrk → nginx (proxy_buffering off, upstream keepalive) → FakeProvider
  haproxy – wrk → HAProxy (one thread, http-reuse always) → FakeProvider
  full    – wrk → Portcullis with the whole mission path (JWT HS256, Redis limiter with token
            settlement, alias rewrite) → FakeProvider
  nginx_token – nginx as above, sent the full pipeline's request bytes (bearer token included)
  full_real, nginx_real – full and nginx_token with real heads: wrk sends the OpenAI Python
            SDK's header lines (sdk.lua), a second fake answers with OpenAI's (--response-headers openai)
"""
import argparse
import json
import math
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CLK = os.sysconf("SC_CLK_TCK")



def machine_line():
    """The host and what ran on it: CPU model, kernel, the peers' and the toolchain's versions, the commit."""
    def out(cmd):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
            return (r.stdout + r.stderr).strip()
        except Exception:
            return ""
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown CPU")
    ngx = out(["nginx", "-v"]).replace("nginx version: ", "") or "nginx ?"
    hv = re.search(r"version (\S+)", out(["haproxy", "-v"]))
    hap = f"HAProxy {hv.group(1)}" if hv else "HAProxy ?"
    sv = re.search(r"Swift version (\S+)", out(["swift", "--version"]))
    swift = f"Swift {sv.group(1)}" if sv else "Swift ?"
    commit = out(["git", "rev-parse", "--short", "HEAD"]) or "?"
    return f"Machine: {cpu}, Linux {os.uname().release}; {ngx}, {hap}, wrk; {swift}; Portcullis at {commit}."

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def round_order(items, r):
    """`items` in round `r`'s order: as given in even rounds, reversed in odd ones (compared
    targets run next to each other, and neither always goes first)."""
    items = list(items)
    return items if r % 2 == 0 else items[::-1]


# The targets behind the two req/s targets that land within this host's noise (plain / HAProxy,
# full pipeline / nginx): they run on for --headline-rounds rounds after the others stop.
HEADLINE = ("gateway", "haproxy", "gateway_bare", "nginx", "full")


def median_interval(xs, confidence=0.95):
    """A distribution-free interval for the median of the population the sorted `xs` were drawn
    from (order statistics: the true median lies below the k-th smallest with probability
    P(Binomial(n, 1/2) < k)): (low, high, the interval's actual confidence), or None when `xs` are
    too few for `confidence` (fewer than 6 for 95 %). Per-round ratios of interleaved rounds are
    about independent draws; a run's noise spells make them less so, which this does not model."""
    n = len(xs)
    below = 0.0           # P(X < k) for X ~ Binomial(n, 1/2), k rising from 0
    k = 0
    while True:
        nxt = below + math.comb(n, k) / 2 ** n
        if 2 * nxt > 1 - confidence:
            break
        below, k = nxt, k + 1
    if k == 0:
        return None
    return xs[k - 1], xs[n - k], 1 - 2 * below


def middle_half(xs):
    """First and third quartile of the sorted, non-empty `xs`, by rank."""
    return xs[len(xs) // 4], xs[(3 * len(xs)) // 4]


def merge_slices(ps):
    """One target's slices of a round as one run: req/s the mean of the slices' (equal lengths),
    CPU per request the slices' CPU over their requests, latency percentiles the median of the
    slices' (wrk reports them per run)."""
    n = sum(p["requests"] for p in ps)
    per = lambda k: sum(p[k] for p in ps) / max(1, n) * 1e6
    return {"rps": statistics.mean(p["rps"] for p in ps), "requests": n,
            "p50": statistics.median(p["p50"] for p in ps), "p99": statistics.median(p["p99"] for p in ps),
            "p999": statistics.median(p["p999"] for p in ps),
            "cpu_us": per("cpu_s"), "fake_us": per("fake_s"), "idle_us": per("idle_s"),
            "client_cpu_us": sum(p["client_cpu_us"] * p["requests"] for p in ps) / max(1, n),
            "non2xx": sum(p["non2xx"] for p in ps), "errors": "; ".join(p["errors"] for p in ps if p["errors"])}


def wait_port(port, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} not open")


def cpu_ticks():
    """The machine's CPU ticks: (all, stolen by the hypervisor, idle), from /proc/stat's `cpu` line."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v[:8]), v[7], v[3] + v[4]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / CLK


def write_gateway_config(tmp, fake_port, name, port, routing, server_extra="", workers=1):
    """A one-worker (`workers`) Portcullis config in front of the fake on `fake_port`, written to
    `tmp/name`; `routing` is its routes (and models), `server_extra` more `server:` keys (lines
    indented two spaces). Returns the config's path."""
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write(f"""server:
  listen: ["127.0.0.1:{port}"]
  workers: {workers}
  max_connections: 20000
{server_extra}providers:
  fake: {{ base_url: "http://127.0.0.1:{fake_port}", kind: openai, max_idle_connections: 256 }}
{routing}
log: {{ level: warn, access: false }}
""")
    return path


PLAIN_ROUTING = "routes:\n  - path: /v1/chat/completions\n    provider: fake"


def alias_routing(tier):
    """`chat-default` served by the fake's `gpt-4o-mini` for `tier`, on an alias route."""
    return f"""models:
  chat-default:
    tiers:
      {tier}: [{{ target: fake/gpt-4o-mini }}]
    default_tier: {tier}
routes:
  - path: /v1/chat/completions
"""


def start_portcullis(bin_dir, cfg, env=None, stderr=subprocess.DEVNULL):
    """The gateway on `cfg` (its stdout discarded)."""
    return subprocess.Popen([os.path.join(bin_dir, "portcullis"), "--config", cfg],
                            stdout=subprocess.DEVNULL, stderr=stderr, env=env)


# The header work Portcullis's plain path does on every request, for peers asked to do the same:
# a request id generated, sent upstream and returned; X-Forwarded-For and -Proto set upstream.
NGINX_SAME_HEADERS = """
      proxy_set_header X-Request-ID $request_id;
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_set_header X-Forwarded-Proto $scheme;
      add_header X-Request-ID $request_id always;"""
HAPROXY_SAME_HEADERS = """
  unique-id-format %[uuid]
  unique-id-header X-Request-ID
  http-request set-header X-Forwarded-For %[src]
  http-request set-header X-Forwarded-Proto http
  http-after-response set-header X-Request-ID %[unique-id]"""


def nginx_conf(tmp, port, fake_port, nofile=65536, same_headers=False, master=True, workers=1, body_buffer=None, tag="",
               tls_ca=None):
    """nginx as a plain reverse proxy in front of the fake: one worker (`workers`), upstream
    keep-alive, responses unbuffered (`proxy_buffering off`). `same_headers`: also the header work
    Portcullis does (`NGINX_SAME_HEADERS`). `master=False`: one process doing the work, for
    `instructions.sh` (callgrind follows one process). `body_buffer` (e.g. "128k"): request bodies
    up to that size kept in memory instead of a temporary file (`bodies.py`). `tls_ca`: the upstream
    at `fake_port` speaks TLS with a certificate for 127.0.0.1 from that CA (verified; sessions
    reused), as `instructions.sh nginx-tls` runs it. Returns the config's path."""
    name = ("nginx-same-headers" if same_headers else "nginx") + ("" if workers == 1 else f"-{workers}") + \
        (f"-body-{body_buffer}" if body_buffer else "") + tag
    conf = os.path.join(tmp, name + ".conf")
    extra = NGINX_SAME_HEADERS if same_headers else ""
    with open(conf, "w") as f:
        f.write(f"""worker_processes {workers};
{"" if master else "master_process off;"}
daemon off;
pid {tmp}/{name}.pid;
error_log {tmp}/{name}-error.log warn;
worker_rlimit_nofile {nofile};
events {{ worker_connections 20000; }}
http {{
  access_log off;{f"{chr(10)}  client_body_buffer_size {body_buffer};" if body_buffer else ""}
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  upstream fake {{ server 127.0.0.1:{fake_port}; keepalive 256; keepalive_requests 1000000; }}
  server {{
    listen 127.0.0.1:{port};
    keepalive_requests 1000000;
    location / {{
      proxy_pass {"https" if tls_ca else "http"}://fake;{f"{chr(10)}      proxy_ssl_verify on; proxy_ssl_trusted_certificate {tls_ca}; proxy_ssl_name 127.0.0.1; proxy_ssl_session_reuse on;" if tls_ca else ""}
      proxy_http_version 1.1;
      proxy_set_header Connection "";{extra}
      proxy_buffering off;
      proxy_request_buffering on;
    }}
  }}
}}
""")
    return conf


def start_nginx(tmp, port, fake_port, nofile=65536, same_headers=False, workers=1, body_buffer=None, tag=""):
    """nginx as `nginx_conf` describes it, with its master process (`tag`: a second instance's config name)."""
    conf = nginx_conf(tmp, port, fake_port, nofile=nofile, same_headers=same_headers, workers=workers, body_buffer=body_buffer, tag=tag)
    return subprocess.Popen(["nginx", "-c", conf, "-p", tmp], stderr=subprocess.DEVNULL)


def nginx_worker(ngx):
    """The pid of the (one) worker of the nginx master `ngx`: the process that does the work."""
    return int(subprocess.run(["pgrep", "-P", str(ngx.pid)], capture_output=True, text=True).stdout.split()[0])


def stop_all(procs):
    """SIGTERM to every process (nginx's master stops its worker), then wait; kill what lingers."""
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()


def percentile(xs, q):
    """The `q` quantile (0–1) of `xs` by rank; 0.0 for no samples."""
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else 0.0


def next_response(s, buf):
    """Reads one Content-Length-framed response from keep-alive socket `s`, `buf` holding what
    was read before: (its head, lowercased; the bytes after it)."""
    while True:
        h = buf.find(b"\r\n\r\n")
        if h >= 0:
            head = buf[:h].lower()
            cl = int(head.split(b"content-length: ")[1].split(b"\r\n")[0])
            if len(buf) >= h + 4 + cl:
                return head, buf[h + 4 + cl:]
        buf += s.recv(65536)


def read_to_eof(s):
    """Everything `s` sends until it closes."""
    data = b""
    while True:
        c = s.recv(65536)
        if not c:
            return data
        data += c


def recv_nowait(s):
    """A non-blocking socket's next bytes: b"" at EOF or on an error, None when none are there yet."""
    try:
        return s.recv(65536)
    except BlockingIOError:
        return None
    except OSError:
        return b""


def tree_cpu_seconds(pid):
    """CPU of a process and all its descendants (LiteLLM's proxy runs a uvicorn worker)."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            total += cpu_seconds(p)
        except OSError:
            continue
        kids = subprocess.run(["pgrep", "-P", str(p)], capture_output=True, text=True).stdout.split()
        todo += [int(k) for k in kids]
    return total


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wrk(port, seconds, conns, path="/v1/chat/completions", token=None, script="post.lua"):
    extra = ["-H", f"Authorization: Bearer {token}"] if token else []
    c0 = os.times()
    out = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", "-s", os.path.join(HERE, script), *extra,
                          f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, timeout=seconds + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    def lat(p):
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)\b", out)
        v, unit = float(m.group(1)), m.group(2)
        return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    total = int(re.search(r"(\d+) requests in", out).group(1))
    p999 = re.search(r"p99.9_us (\d+)", out)
    c1 = os.times()
    return {"client_cpu_us": ((c1.children_user + c1.children_system) - (c0.children_user + c0.children_system)) / max(1, total) * 1e6,
            "rps": rps, "p50": lat(50), "p99": lat(99), "p999": int(p999.group(1)) / 1000 if p999 else 0.0,
            "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "errors": errors.group(1) if errors else "", "requests": total}


def wrk_timeouts(res):
    m = re.search(r"timeout (\d+)", res["errors"])
    return int(m.group(1)) if m else 0


def stream_events(port, pid, n=20, tokens=2000, model="m"):
    """Streams `n` answers of `tokens` events each (no provider delays), one at a time: the server
    process's CPU per event (µs) and the p50/p99 gap between consecutive events at the client (ms)."""
    body = json.dumps({"model": model, "stream": True, "messages": [{"role": "user", "content": "hi"}]}).encode()
    c0 = cpu_seconds(pid)
    gaps, events = [], 0
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall((f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nx-fake-tokens: {tokens}\r\n"
                   f"Connection: close\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body)
        last = None
        while True:
            b = s.recv(65536)
            if not b:
                break
            now = time.perf_counter()
            k = b.count(b"data:")
            if k and last is not None:
                gaps.append((now - last) * 1000 / k)
            if k:
                last, events = now, events + k
        s.close()
    cpu = (cpu_seconds(pid) - c0) / max(1, events) * 1e6
    return cpu, percentile(gaps, 0.5), percentile(gaps, 0.99), events


def ttfb(port, n=30, delay_ms=0, model="m"):
    """Median time from sending a streaming request to receiving the first SSE event, ms."""
    body = json.dumps({"model": model, "stream": True, "messages": [{"role": "user", "content": "hi"}]}).encode()
    samples = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        req = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               f"x-fake-first-byte-delay-ms: {delay_ms}\r\nx-fake-inter-event-delay-ms: 5\r\nConnection: close\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
        t = time.perf_counter()
        s.sendall(req)
        got = b""
        while b"data:" not in got:
            b = s.recv(65536)
            if not b:
                break
            got += b
        samples.append((time.perf_counter() - t) * 1000)
        while s.recv(65536):
            pass
        s.close()
    return statistics.median(samples)


def idle_streams_rss(port, pid, n):
    """RSS of `pid` before and while `n` streams are open and idle (provider hangs after one event)."""
    before = rss_kb(pid)
    body = json.dumps({"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}).encode()
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall((f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nx-fake-hang-after: 1\r\n"
                   f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
        socks.append(s)
    for s in socks:  # wait until each has its first event: all streams are open end to end
        s.settimeout(10)
        got = b""
        while b"data:" not in got:
            got += s.recv(65536)
    time.sleep(0.5)
    during = rss_kb(pid)
    for s in socks:
        s.close()
    return before, during


def b64u(b):
    import base64
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def mint_tokens(tmp):
    """An HS256 and an RS256 token (RS256 signed with the openssl CLI), plus the auth YAML."""
    import hashlib, hmac
    secret = "benchmark-secret-0123456789abcdef0123456789"
    claims = {"tenant_id": "acme", "sub": "bench", "tier": "pro", "exp": int(time.time()) + 86400}
    def signing_input(alg, kid):
        return (b64u(json.dumps({"alg": alg, "kid": kid}).encode()) + "." + b64u(json.dumps(claims).encode())).encode()
    si = signing_input("HS256", "hs1")
    hs = si.decode() + "." + b64u(hmac.new(secret.encode(), si, hashlib.sha256).digest())
    key, pub = os.path.join(tmp, "rs.key"), os.path.join(tmp, "rs.pub")
    subprocess.run(["openssl", "genrsa", "-out", key, "2048"], check=True, capture_output=True)
    subprocess.run(["openssl", "rsa", "-in", key, "-pubout", "-out", pub], check=True, capture_output=True)
    si = signing_input("RS256", "rs1")
    sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key], input=si, capture_output=True, check=True).stdout
    rs = si.decode() + "." + b64u(sig)
    auth = f"""auth:
  jwt:
    keys:
      - {{ kid: hs1, alg: HS256, secret_env: BENCH_JWT_SECRET }}
      - {{ kid: rs1, alg: RS256, public_key_file: {pub} }}
"""
    return hs, rs, auth, secret


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--latency-rounds", type=int, default=7,
                    help="rounds of the half-load and SSE sections (their targets sit near the noise: more rounds than the table)")
    ap.add_argument("--headline-rounds", type=int, default=16,
                    help="rounds for the targets of the two req/s targets within the noise (HEADLINE): enough for a 95%% interval of their median ratios")
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--slice", type=int, default=1,
                    help="seconds a target runs before the next takes its turn (0: each target's --seconds at once)")
    ap.add_argument("--max-steal", type=float, default=0.05,
                    help="discard and rerun a round when the hypervisor took more than this share of the machine during one of its runs")
    ap.add_argument("--out", default=os.path.join(HERE, "RESULTS.md"))
    ap.add_argument("--no-litellm", action="store_true", help="skip LiteLLM's proxy even when it is installed")
    ap.add_argument("--only", default="", help="comma-separated targets (a partial run; results are printed, not written)")
    a = ap.parse_args()
    if a.quick:
        a.rounds, a.seconds, a.latency_rounds, a.headline_rounds = 2, 3, 2, 3

    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    tmp = tempfile.mkdtemp(prefix="portcullis-bench-")
    procs = []
    fake_port, gw_port, ngx_port = free_port(), free_port(), free_port()
    fake = subprocess.Popen([os.path.join(a.bin, "FakeProvider"), "--listen", f"127.0.0.1:{fake_port}", "--workers", "1"],
                            stderr=subprocess.DEVNULL)
    procs.append(fake)
    def gateway_config(name, port, routing, server_extra="", workers=1):
        return write_gateway_config(tmp, fake_port, name, port, routing, server_extra=server_extra, workers=workers)

    cfg = gateway_config("portcullis.yaml", gw_port, PLAIN_ROUTING)
    def gateway(cfg, env=None):
        p = start_portcullis(a.bin, cfg, env=env)
        procs.append(p)
        return p

    gw = gateway(cfg)
    # As an operator runs it on this machine: `workers: auto` (one event loop per core), next to
    # nginx and HAProxy with a worker or thread per core (the half-load section "as deployed").
    auto_port = free_port()
    gw_auto = gateway(gateway_config("portcullis-auto.yaml", auto_port, PLAIN_ROUTING,
                                     workers="auto"))
    # The plain path configured as the peers' plain configurations are: no header of its own
    # added upstream or to answers (`server.upstream_headers: []`, `response_headers: []`).
    bare_port = free_port()
    cfg_bare = gateway_config("portcullis-bare.yaml", bare_port, PLAIN_ROUTING,
                              server_extra="  upstream_headers: []\n  response_headers: []\n")
    gw_bare = gateway(cfg_bare)
    hs_token, rs_token, auth_yaml, secret = mint_tokens(tmp)
    auth_port = free_port()
    cfg_auth = os.path.join(tmp, "portcullis-auth.yaml")
    with open(cfg, encoding="utf-8") as src, open(cfg_auth, "w") as f:
        f.write(src.read().replace(f"127.0.0.1:{gw_port}", f"127.0.0.1:{auth_port}") + auth_yaml)
    gw_auth = gateway(cfg_auth, env=dict(os.environ, BENCH_JWT_SECRET=secret))
    # The alias router: the same request bytes ("model": "chat-default"), rewritten to a target's model.
    alias_port = free_port()
    cfg_alias = gateway_config("portcullis-alias.yaml", alias_port, alias_routing("standard"))
    gw_alias = gateway(cfg_alias)
    # The Anthropic adapter: the same alias served by a Messages-API target (the fake speaks both).
    adapter_port = free_port()
    cfg_adapter = os.path.join(tmp, "portcullis-adapter.yaml")
    with open(cfg_adapter, "w") as f:
        f.write(f"""server: {{ listen: ["127.0.0.1:{adapter_port}"], workers: 1, max_connections: 20000 }}
providers:
  claude: {{ base_url: "http://127.0.0.1:{fake_port}", kind: anthropic, max_idle_connections: 256 }}
models:
  chat-default: {{ tiers: {{ standard: [{{ target: claude/claude-test }}] }}, default_tier: standard }}
routes:
  - path: /v1/chat/completions
log: {{ level: warn, access: false }}
""")
    gw_adapter = gateway(cfg_adapter)
    # The limiter (JWT on in all three): off (jwt_hs256 above), memory store, Redis store.
    redis_port = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no", "--dir", tmp], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.append(redis)
    limits_yaml = """limits:
  default_tier: pro
  per_user: { requests_per_minute: 100000000 }
  tiers:
    pro: { requests_per_minute: 100000000, tokens_per_minute: 100000000000 }
"""
    redis_yaml = f'redis: {{ url: "redis://127.0.0.1:{redis_port}", timeout: 200ms }}\n'
    lim_mem_port, lim_redis_port, lim_nolease_port = free_port(), free_port(), free_port()
    cfg_mem = gateway_config("portcullis-limit-memory.yaml", lim_mem_port,
                             "routes:\n  - path: /v1/chat/completions\n    provider: fake\n" + auth_yaml + limits_yaml)
    cfg_redis = gateway_config("portcullis-limit-redis.yaml", lim_redis_port,
                               "routes:\n  - path: /v1/chat/completions\n    provider: fake\n" + auth_yaml + limits_yaml
                               + redis_yaml)
    # The same with local leases off: every request decided by a script call (batched per loop
    # iteration), the design without leases.
    cfg_nolease = gateway_config("portcullis-limit-redis-nolease.yaml", lim_nolease_port,
                                 "routes:\n  - path: /v1/chat/completions\n    provider: fake\n" + auth_yaml + limits_yaml
                                 + redis_yaml.replace("timeout: 200ms", "timeout: 200ms, lease_divisor: 0"))
    env_jwt = dict(os.environ, BENCH_JWT_SECRET=secret)
    gw_lim_mem = gateway(cfg_mem, env=env_jwt)
    gw_lim_redis = gateway(cfg_redis, env=env_jwt)
    gw_lim_nolease = gateway(cfg_nolease, env=env_jwt)
    ngx = start_nginx(tmp, ngx_port, fake_port)
    procs.append(ngx)
    ngx_same_port = free_port()
    ngx_same = start_nginx(tmp, ngx_same_port, fake_port, same_headers=True)
    procs.append(ngx_same)
    # HAProxy 2.6 as the fastest plain proxy here: one thread, connection reuse to the backend.
    # `streaming`: `option http-no-delay`, HAProxy's documented setting for interactive
    # traffic such as SSE (by default it asks the kernel to hold small writes for more data,
    # which costs a streamed event tens of ms); the SSE section shows HAProxy both ways.
    def start_haproxy(port, same_headers=False, streaming=False, threads=1):
        conf = os.path.join(tmp, "haproxy-same-headers.cfg" if same_headers else
                            "haproxy-streaming.cfg" if streaming else f"haproxy-{threads}.cfg")
        with open(conf, "w") as f:
            f.write(f"""global
  nbthread {threads}
  maxconn 9000
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  http-reuse always{chr(10) + "  option http-no-delay" if streaming else ""}
frontend fe
  bind 127.0.0.1:{port}{HAPROXY_SAME_HEADERS if same_headers else ""}
  default_backend be
backend be
  server fake 127.0.0.1:{fake_port} maxconn 1000
""")
        return subprocess.Popen(["haproxy", "-db", "-f", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    hap_port = free_port()
    hap = start_haproxy(hap_port)
    procs.append(hap)
    hap_same_port = free_port()
    hap_same = start_haproxy(hap_same_port, same_headers=True)
    procs.append(hap_same)
    hap_stream_port = free_port()
    procs.append(start_haproxy(hap_stream_port, streaming=True))
    cores = os.cpu_count() or 1
    hap_auto_port, ngx_auto_port = free_port(), free_port()
    hap_auto = start_haproxy(hap_auto_port, threads=cores)
    ngx_auto = start_nginx(tmp, ngx_auto_port, fake_port, workers=cores)
    procs += [hap_auto, ngx_auto]
    # LiteLLM's proxy (installed by run.sh into .build-bench/litellm), pointed at the same fake.
    litellm_bin = os.path.join(os.path.dirname(HERE), ".build-bench", "litellm", "bin", "litellm")
    litellm_key = "sk-bench-master-key-0123456789abcdef"
    lit_port = free_port() if os.path.exists(litellm_bin) and not a.no_litellm else None
    if lit_port:
        lit_conf = os.path.join(tmp, "litellm.yaml")
        with open(lit_conf, "w") as f:
            f.write(f"""model_list:
  - model_name: chat-default
    litellm_params: {{ model: openai/gpt-4o-mini, api_base: "http://127.0.0.1:{fake_port}/v1", api_key: sk-fake }}
litellm_settings: {{ telemetry: false }}
""")
        lit = subprocess.Popen([litellm_bin, "--config", lit_conf, "--host", "127.0.0.1", "--port", str(lit_port), "--num_workers", "1"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                               env=dict(os.environ, LITELLM_MASTER_KEY=litellm_key, LITELLM_LOCAL_MODEL_COST_MAP="True",
                                        LITELLM_LOG="ERROR"))
        procs.append(lit)
    # The whole mission path: JWT, the Redis limiter (requests and tokens, settled with usage),
    # the alias router rewriting "model".
    full_port = free_port()
    cfg_full = gateway_config("portcullis-full.yaml", full_port, alias_routing("pro") + auth_yaml + limits_yaml + redis_yaml)
    gw_full = gateway(cfg_full, env=env_jwt)
    # Real heads: the full pipeline and nginx (sent the same bytes, the token too) in front of a
    # second fake that answers with the header lines OpenAI's API sends, wrk sending the OpenAI
    # Python SDK's (sdk.lua). The other targets keep the smallest heads that work.
    fake_real_port, full_real_port, ngx_real_port = free_port(), free_port(), free_port()
    fake_real = subprocess.Popen([os.path.join(a.bin, "FakeProvider"), "--listen", f"127.0.0.1:{fake_real_port}", "--workers", "1",
                                  "--response-headers", "openai"], stderr=subprocess.DEVNULL)
    procs.append(fake_real)
    gw_full_real = gateway(write_gateway_config(tmp, fake_real_port, "portcullis-full-real.yaml", full_real_port,
                                                alias_routing("pro") + auth_yaml + limits_yaml + redis_yaml), env=env_jwt)
    ngx_real = start_nginx(tmp, ngx_real_port, fake_real_port, tag="-real")
    procs.append(ngx_real)
    script_of = {"full_real": "sdk.lua", "nginx_real": "sdk.lua"}
    fake_of = {"full_real": fake_real, "nginx_real": fake_real}
    try:
        for p in (fake_port, gw_port, bare_port, ngx_port, auth_port, alias_port, lim_mem_port, lim_redis_port, redis_port, adapter_port,
                  hap_port, full_port, lim_nolease_port, ngx_same_port, hap_same_port, hap_stream_port, auto_port,
                  hap_auto_port, ngx_auto_port, fake_real_port, full_real_port, ngx_real_port):
            wait_port(p)
        if lit_port:
            wait_port(lit_port, timeout=120)
        time.sleep(0.3)
        ngx_worker = nginx_worker(ngx)
        # Run order: the targets a ratio compares sit next to each other (this VM's noise comes
        # and goes over seconds, so runs far apart in a round differ by more than the proxies do),
        # and every other round runs the order backwards, so no target always comes first.
        targets = {# Context: Portcullis as deployed (a worker per core), whose maximum sets the
                   # half-load section's second load.
                   "gateway_auto": (auto_port, gw_auto.pid, None),
                   "nginx_auto": (ngx_auto_port, ngx_auto.pid, None), "haproxy_auto": (hap_auto_port, hap_auto.pid, None),
                   # Context, not targets: the peers doing Portcullis's header work too.
                   "nginx_same": (ngx_same_port, nginx_worker(ngx_same), None), "haproxy_same": (hap_same_port, hap_same.pid, None),
                   "direct": (fake_port, fake.pid, None), "gateway": (gw_port, gw.pid, None),
                   "haproxy": (hap_port, hap.pid, None),
                   # The plain path without headers of its own, as the peers run (against haproxy).
                   "gateway_bare": (bare_port, gw_bare.pid, None),
                   "nginx": (ngx_port, ngx_worker, None),
                   "full": (full_port, gw_full.pid, hs_token),
                   # nginx sent the full pipeline's request bytes (its bearer token included).
                   "nginx_token": (ngx_port, ngx_worker, hs_token),
                   # The two with real heads (sdk.lua, OpenAI's answer lines), the same bytes both ways.
                   "full_real": (full_real_port, gw_full_real.pid, hs_token),
                   "nginx_real": (ngx_real_port, nginx_worker(ngx_real), hs_token),
                   # Limiter cost: JWT on in all three (against jwt_hs256, and nginx for the target).
                   "jwt_limit_redis": (lim_redis_port, gw_lim_redis.pid, hs_token),
                   # Auth cost: the same request bytes (token included) with auth on, then off.
                   "jwt_hs256": (auth_port, gw_auth.pid, hs_token), "noauth_hs": (gw_port, gw.pid, hs_token),
                   "jwt_limit_memory": (lim_mem_port, gw_lim_mem.pid, hs_token),
                   "jwt_limit_redis_nolease": (lim_nolease_port, gw_lim_nolease.pid, hs_token),
                   "noauth_rs": (gw_port, gw.pid, rs_token), "jwt_rs256": (auth_port, gw_auth.pid, rs_token),
                   # Alias rewrite cost: the same bytes to a plain route, then to an alias route.
                   "plain_route": (gw_port, gw.pid, None), "alias_route": (alias_port, gw_alias.pid, None)}
        if lit_port:
            targets["litellm"] = (lit_port, lit.pid, litellm_key)
        if a.only:
            targets = {k: v for k, v in targets.items() if k in a.only.split(",")}
        for name, (port, _, tok) in targets.items():  # warm-up
            wrk(port, 1, a.conns, token=tok, script=script_of.get(name, "post.lua"))
        def redis_calls():
            out = subprocess.run(["redis-cli", "-p", str(redis_port), "INFO", "commandstats"], capture_output=True, text=True).stdout
            # Commands the gateway sends (the scripts' own redis.call()s are counted by Redis too).
            sent = ("evalsha", "eval", "zrem", "script|load", "auth", "select")
            return sum(int(m.group(2)) for m in re.finditer(r"cmdstat_([\w|]+):calls=(\d+)", out) if m.group(1) in sent)
        # Commands sent to Redis per request, per Redis-backed target (counted around its runs).
        redis_sent = {k: [0, 0] for k in ("jwt_limit_redis", "jwt_limit_redis_nolease", "full")}
        rounds = {k: [] for k in targets}
        stolen = []   # per kept run: the share of the machine's CPU the hypervisor took (a noise gauge)
        # A round in which the hypervisor took more than --max-steal of the machine during any
        # run is discarded whole (its pairs with it) and run again, at most --rounds times: a
        # busy host slows every target of that spell unevenly, and a per-round ratio then
        # measures the host. Discarded rounds are counted in RESULTS.md.
        discarded = []   # the worst steal of each discarded round
        first = next(iter(targets))
        # A round runs each target for --seconds in --slice-second slices, the targets taking turns
        # slice by slice (every other turn in reverse order): this VM's speed swings by a third
        # over seconds (a whole spell slow, then fast, no CPU stolen), and compared targets that
        # take turns every second meet the same spells, where two back-to-back 5-second runs can
        # each meet a different one. LiteLLM runs once a round, whole (its timed-out requests
        # drain for two seconds after a run).
        slices = max(1, round(a.seconds / a.slice)) if a.slice > 0 else 1
        slice_s = max(1, a.seconds // slices)     # (wrk takes whole seconds)
        # Two phases: every target for --rounds rounds, then the targets of the two req/s targets
        # that sit within this host's noise (plain / HAProxy, full / nginx) on to --headline-rounds,
        # so their medians get an interval narrow enough to settle them (`median_interval`).
        headline = {k: v for k, v in targets.items() if k in HEADLINE}
        phases = [(targets, a.rounds)] + ([(headline, a.headline_rounds)] if headline and a.headline_rounds > a.rounds else [])
        for phase_targets, want in phases:
            first = next(iter(phase_targets))
            retries = 0    # rounds discarded in this phase (at most `want`)
            while (r := len(rounds[first])) < want:   # r: rounds kept so far
                order = list(phase_targets.items())
                this_round, this_stolen = {}, []
                parts = {}
                for turn in range(slices):
                    for name, (port, pid, tok) in round_order(order, r + turn):
                        if name == "litellm" and turn > 0:
                            continue
                        cpu = tree_cpu_seconds if name in ("litellm", "nginx_auto") else cpu_seconds   # (more than one process)
                        fake_pid = fake_of.get(name, fake).pid
                        c0, f0 = cpu(pid), cpu_seconds(fake_pid)
                        r0 = redis_calls() if name in redis_sent else 0
                        t0 = cpu_ticks()
                        res = wrk(port, a.seconds if name == "litellm" else slice_s, a.conns, token=tok, script=script_of.get(name, "post.lua"))
                        t1 = cpu_ticks()
                        res["ticks"] = (t1[0] - t0[0], t1[1] - t0[1])   # (all, stolen) during this turn
                        if name == "litellm":
                            time.sleep(2)    # its backlog of timed-out requests drains before the next run
                        res["cpu_s"] = cpu(pid) - c0
                        # The rest of the machine: the fake provider behind it (for direct, the server itself),
                        # wrk, and the cores left idle, per request (the split that explains a ratio).
                        res["fake_s"] = cpu_seconds(fake_pid) - f0
                        res["idle_s"] = (t1[2] - t0[2]) / CLK
                        parts.setdefault(name, []).append(res)
                        if name in redis_sent:
                            redis_sent[name][0] += redis_calls() - r0
                            redis_sent[name][1] += res["requests"]
                for name, ps in parts.items():
                    res = merge_slices(ps)
                    this_round[name] = res
                    # The share the hypervisor took over the target's turns together (a 1-second
                    # turn alone reads in steps of half a percent).
                    this_stolen.append(sum(p["ticks"][1] for p in ps) / max(1, sum(p["ticks"][0] for p in ps)))
                    print(f"round {r + 1} {name:8s} {res['rps']:9.0f} req/s  p50 {res['p50']:.2f} ms  p99 {res['p99']:.2f} ms  "
                          f"cpu {res['cpu_us']:.1f} us/req  stolen {100 * this_stolen[-1]:.0f}%  non2xx {res['non2xx']} {res['errors']}", file=sys.stderr)
                worst = max(this_stolen)
                if worst > a.max_steal and retries < want:
                    discarded.append(worst)
                    retries += 1
                    print(f"round {r + 1} discarded: the hypervisor took {100 * worst:.0f}% of the machine "
                          f"during one of its runs (limit {100 * a.max_steal:.0f}%); running it again", file=sys.stderr)
                    continue
                for name, res in this_round.items():
                    rounds[name].append(res)
                stolen.extend(this_stolen)
        per_request = {k: (v[0] / v[1] if v[1] else 0.0) for k, v in redis_sent.items()}
        redis_per_request = per_request["jwt_limit_redis"]
        def pair(a_, b_, m):
            """Median over rounds of `a_` against `b_` in metric `m`: a ratio for req/s, a difference otherwise."""
            return statistics.median(x[m] / y[m] if m == "rps" else x[m] - y[m] for x, y in zip(rounds[a_], rounds[b_]))
        def spread(a_, b_, target=None):
            """The middle half of the per-round req/s ratios of `a_` against `b_` (first to third
            quartile, by rank): how far a single round's ratio wanders, printed beside a median so a
            reader can tell a miss from the noise."""
            xs = sorted(x["rps"] / y["rps"] for x, y in zip(rounds[a_], rounds[b_]))
            if not xs:
                return "no rounds"
            lo, hi = middle_half(xs)
            text = f"rounds' middle half {lo:.2f}–{hi:.2f}×"
            iv = median_interval(xs)
            if iv is None:
                # Too few rounds for an interval: a target whose middle half straddles it is
                # not settled by this run either way.
                verdict = f"; the middle half straddles {target:.1f}×: this run does not settle it" if target and lo < target <= hi else ""
                return text + verdict
            ilo, ihi, conf = iv
            text += f"; {100 * conf:.0f}% interval of the median over {len(xs)} rounds {ilo:.2f}–{ihi:.2f}×"
            if target:
                text += (f": **met**" if ilo >= target else f": **missed**" if ihi < target
                         else f": it straddles {target:.1f}×, this run does not settle it")
            return text
        def cpu_pair(a_, b_):
            """Median and middle half of the per-round ratios of server CPU per request (lower is
            cheaper): steadier than req/s where wrk, the proxy and the provider share the cores."""
            xs = sorted(x["cpu_us"] / y["cpu_us"] for x, y in zip(rounds[a_], rounds[b_]) if y["cpu_us"] > 0)
            if not xs:
                return "no rounds"
            lo, hi = middle_half(xs)
            iv = median_interval(xs)
            interval = f"; {100 * iv[2]:.0f}% interval of the median {iv[0]:.2f}–{iv[1]:.2f}×" if iv else ""
            return f"{statistics.median(xs):.2f}× (rounds' middle half {lo:.2f}–{hi:.2f}×{interval})"
        med = {k: {m: statistics.median(x[m] for x in v) for m in ("rps", "p50", "p99", "p999", "cpu_us", "fake_us", "client_cpu_us", "idle_us")}
               for k, v in rounds.items()}
        def limiter_at_half_load():
            """The limiter's added latency at a fixed, partial load: the same paced connections
            (half of the Redis store's measured maximum) against JWT alone, the memory store and
            the Redis store, interleaved rounds. At full load an added p50 mostly restates the
            lower throughput (64 connections queue for longer); here it is the time a request
            waits for its decision. Added = store − JWT alone, per round, median."""
            conns = max(1, int(med["jwt_limit_redis"]["rps"] / 2 * 0.0034))
            ports = {"jwt_hs256": auth_port, "jwt_limit_memory": lim_mem_port, "jwt_limit_redis": lim_redis_port,
                     "jwt_limit_redis_nolease": lim_nolease_port}
            got = {k: [] for k in ports}
            for _ in range(a.rounds):
                for k, port in ports.items():
                    got[k].append(wrk(port, a.seconds, conns, token=hs_token, script="paced.lua"))
            added = {k: {m: statistics.median(x[m] - y[m] for x, y in zip(got[k], got["jwt_hs256"])) for m in ("p50", "p99")}
                     for k in ("jwt_limit_memory", "jwt_limit_redis", "jwt_limit_redis_nolease")}
            return conns, statistics.median(x["rps"] for x in got["jwt_limit_redis"]), added
        if a.only:
            for k, m in med.items():
                print(f"{k:12s} {m['rps']:9.0f} req/s p50 {m['p50']:.2f} p99 {m['p99']:.2f} cpu {m['cpu_us']:.1f} us/req  "
                      f"fake {m['fake_us']:.1f} wrk {m['client_cpu_us']:.1f} idle {m['idle_us']:.1f}")
            for x, y in (("gateway", "haproxy"), ("gateway_bare", "haproxy"), ("full", "nginx")):
                if x in rounds and y in rounds:
                    print(f"{x}/{y} req/s {pair(x, y, 'rps'):.3f} ({spread(x, y, 1.0)}); CPU a request {cpu_pair(x, y)}")
            if "plain_route" in rounds and "alias_route" in rounds:
                r = pair("alias_route", "plain_route", "rps")
                print(f"alias/plain req/s {r:.3f}")
            if {"jwt_hs256", "jwt_limit_memory", "jwt_limit_redis", "jwt_limit_redis_nolease"} <= set(rounds):
                conns, rps, added = limiter_at_half_load()
                print(f"limiter at half load ({rps:.0f} req/s, {conns} paced connections): memory p50 "
                      f"{added['jwt_limit_memory']['p50']:+.3f} p99 {added['jwt_limit_memory']['p99']:+.3f} ms; "
                      f"redis p50 {added['jwt_limit_redis']['p50']:+.3f} p99 {added['jwt_limit_redis']['p99']:+.3f} ms; "
                      f"redis, leases off p50 {added['jwt_limit_redis_nolease']['p50']:+.3f} "
                      f"p99 {added['jwt_limit_redis_nolease']['p99']:+.3f} ms")
                print("redis commands per request " + ", ".join(f"{k} {v:.3f}" for k, v in per_request.items()))
            return
        ratio_ngx = pair("gateway", "nginx", "rps")
        ratio_direct = pair("gateway", "direct", "rps")
        p99_over = pair("gateway", "direct", "p99")
        p50_over = pair("gateway", "direct", "p50")
        errors = sum(x["non2xx"] for v in rounds.values() for x in v)
        hs_ratio = pair("jwt_hs256", "noauth_hs", "rps")
        rs_ratio = pair("jwt_rs256", "noauth_rs", "rps")
        hs_cpu = pair("jwt_hs256", "noauth_hs", "cpu_us")
        rs_cpu = pair("jwt_rs256", "noauth_rs", "cpu_us")
        alias_ratio = pair("alias_route", "plain_route", "rps")
        alias_cpu = pair("alias_route", "plain_route", "cpu_us")
        alias_p50 = pair("alias_route", "plain_route", "p50")
        alias_p99 = pair("alias_route", "plain_route", "p99")
        lim = {k: (pair(k, "jwt_hs256", "rps"), pair(k, "jwt_hs256", "p50"), pair(k, "jwt_hs256", "p99"),
                   pair(k, "jwt_hs256", "cpu_us")) for k in ("jwt_limit_memory", "jwt_limit_redis", "jwt_limit_redis_nolease")}
        nolease_vs_nginx = pair("jwt_limit_redis_nolease", "nginx", "rps")
        redis_vs_nginx = pair("jwt_limit_redis", "nginx", "rps")
        gw_vs_hap = pair("gateway", "haproxy", "rps")
        bare_vs_hap = pair("gateway_bare", "haproxy", "rps") if "gateway_bare" in rounds else None
        full_vs_ngx = pair("full", "nginx", "rps")
        full_vs_ngx_token = pair("full", "nginx_token", "rps") if "nginx_token" in rounds else None
        full_vs_plain = pair("full", "gateway", "rps")
        same = None
        if "nginx_same" in rounds and "haproxy_same" in rounds:
            same = {"gw_hap": pair("gateway", "haproxy_same", "rps"), "gw_ngx": pair("gateway", "nginx_same", "rps"),
                    "full_ngx": pair("full", "nginx_same", "rps"), "redis_ngx": pair("jwt_limit_redis", "nginx_same", "rps"),
                    "ngx_cost": pair("nginx_same", "nginx", "rps"), "hap_cost": pair("haproxy_same", "haproxy", "rps")}

        # Half load: each wrk connection waits 2 ms between requests; enough connections for
        # about half of Portcullis's measured maximum. Added latency vs direct at the same load.
        lit_timeouts = statistics.median(wrk_timeouts(x) for x in rounds["litellm"]) if "litellm" in rounds else 0
        def paced(order, maximum):
            """`order` (name, port), direct first, under the paced load for half of `maximum` req/s:
            connections for it, the gateway's req/s (second in `order`), and each proxy's added
            p50/p99/p99.9 against direct (medians of per-round differences)."""
            conns = max(1, int(maximum / 2 * 0.0034))
            got = {k: [] for k, _ in order}
            for r in range(a.latency_rounds):
                for k, port in round_order(order, r):
                    got[k].append(wrk(port, a.seconds, conns, script="paced.lua"))
            added = {k: {m: statistics.median(g[m] - d[m] for g, d in zip(got[k], got["direct"])) for m in ("p50", "p99", "p999")}
                     for k, _ in order[1:]}
            return conns, statistics.median(x["rps"] for x in got[order[1][0]]), added, got
        half_conns, half_rps, half_added, half = paced(
            (("direct", fake_port), ("gateway", gw_port), ("nginx", ngx_port), ("haproxy", hap_port)), med["gateway"]["rps"])
        half_over = half_added["gateway"]
        # The same, as deployed: Portcullis with `workers: auto`, nginx and HAProxy with a worker or
        # thread per core, at half of that Portcullis's maximum (a paced connection's requests come
        # in bursts with the others': a second event loop takes half of each burst).
        deployed = paced((("direct", fake_port), ("gateway_auto", auto_port), ("nginx_auto", ngx_auto_port),
                          ("haproxy_auto", hap_auto_port)), med["gateway_auto"]["rps"])[:3] if "gateway_auto" in med else None
        lim_conns, lim_half_rps, lim_half = limiter_at_half_load()
        # SSE through each proxy: per-event delay (provider's send stamp → client) and time to
        # first event, the same load direct and proxied, interleaved rounds (Benchmarks/sse.py).
        import sse
        sse_targets = {"direct": (fake_port, None), "gateway": (gw_port, None), "nginx": (ngx_port, None),
                       "haproxy": (hap_port, None), "haproxy_nodelay": (hap_stream_port, None), "full": (full_port, hs_token)}
        sse_rounds = {k: [] for k in sse_targets}
        sse_stolen = []   # this section's own noise gauge (it runs minutes after the table above)
        for r in range(a.latency_rounds):
            for k, (port, tok) in round_order(sse_targets.items(), r):
                t0 = cpu_ticks()
                d, f_, failed = sse.run(port, token=tok)
                t1 = cpu_ticks()
                sse_stolen.append((t1[1] - t0[1]) / max(1, t1[0] - t0[0]))
                sse_rounds[k].append({"p50": percentile(d, .5), "p99": percentile(d, .99), "p999": percentile(d, .999),
                                      "first": statistics.median(f_) if f_ else 0.0, "failed": failed, "events": len(d)})
        sse_med = {k: {m: statistics.median(x[m] for x in v) for m in ("p50", "p99", "p999", "first")} for k, v in sse_rounds.items()}
        sse_added = {k: {m: statistics.median(x[m] - y[m] for x, y in zip(sse_rounds[k], sse_rounds["direct"]))
                         for m in ("p50", "p99", "p999", "first")} for k in sse_targets if k != "direct"}
        sse_failed = sum(x["failed"] for v in sse_rounds.values() for x in v)
        t_direct, t_gw, t_ngx = ttfb(fake_port), ttfb(gw_port), ttfb(ngx_port)
        t_oa, t_an = ttfb(alias_port, model="chat-default"), ttfb(adapter_port, model="chat-default")
        ev_oa = stream_events(alias_port, gw_alias.pid, model="chat-default")
        ev_an = stream_events(adapter_port, gw_adapter.pid, model="chat-default")
        n_idle = 1000
        gw_rss = idle_streams_rss(gw_port, gw.pid, n_idle)
        ngx_rss = idle_streams_rss(ngx_port, ngx_worker, n_idle)
    finally:
        if lit_port:
            try:
                os.killpg(lit.pid, signal.SIGTERM)   # LiteLLM and its uvicorn worker
            except OSError:
                pass
        stop_all(procs)

    lines = [
        "# Benchmark results",
        "",
        f"Run: `Benchmarks/run.sh` on {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, release builds, one worker each for",
        f"Portcullis, nginx and the fake provider; wrk -t1 -c{a.conns}, {a.rounds} interleaved rounds of {a.seconds} s a target"
        + (f" ({a.headline_rounds} for the targets of the plain / HAProxy and full / nginx ratios, which go on alone after the others stop)"
           if a.headline_rounds > a.rounds else "")
        + (f" in {a.seconds // max(1, a.slice)} turns of {a.slice} s (the targets take turns, every other turn in reverse order)" if 0 < a.slice < a.seconds else "") + ",",
        "small non-streaming chat completion (POST, 80-byte body, ~550-byte JSON answer). Medians over rounds;",
        "ratios are medians of per-round ratios. CPU is the server process's user+system time per request.",
        machine_line(),
        "Compared targets run next to each other, every other round (and turn) in reverse order. CPU stolen by the",
        f"hypervisor during the runs (a gauge of this VM's noise): median {100 * statistics.median(stolen):.0f}%, "
        f"max {100 * max(stolen):.0f}% of the machine. Rounds in which it took more than {100 * a.max_steal:.0f}% during any run "
        f"are discarded whole and run again (at most as many as the phase's rounds): "
        + (f"{len(discarded)} discarded here (worst steal in each: {', '.join(f'{100 * x:.0f}%' for x in discarded)})."
           if discarded else "none was discarded here."),
        "",
        "| target | req/s | p50 ms | p99 ms | p99.9 ms | server CPU µs/req |",
        "|---|---|---|---|---|---|",
    ]
    for k, label in (("direct", "fake provider directly"), ("gateway", "Portcullis → fake"), ("nginx", "nginx → fake"),
                     ("haproxy", "HAProxy 2.6 → fake"),
                     ("gateway_auto", f"Portcullis as deployed (`workers: auto`: {os.cpu_count()} event loops here) → fake"),
                     ("nginx_auto", f"nginx with a worker per core ({os.cpu_count()}) → fake"),
                     ("haproxy_auto", f"HAProxy with a thread per core ({os.cpu_count()}) → fake"),
                     ("gateway_bare", "Portcullis configured as the peers are (no header of its own added: `upstream_headers: []`, `response_headers: []`) → fake"),
                     ("nginx_token", "nginx → fake, sent the full pipeline's request bytes (its 250-byte bearer token)"),
                     ("nginx_same", "nginx, doing Portcullis's header work too → fake"),
                     ("haproxy_same", "HAProxy, doing Portcullis's header work too → fake"),
                     ("full", "Portcullis, full pipeline (JWT + Redis limiter + alias + usage settlement) → fake"),
                     ("nginx_real", "nginx → fake, real heads (the OpenAI Python SDK's 18 request lines, OpenAI's 23 answer lines; the token sent too)"),
                     ("full_real", "Portcullis, full pipeline → fake, real heads (as the line above)"),
                     ("noauth_hs", "Portcullis, auth off, HS256 token sent → fake"),
                     ("jwt_hs256", "Portcullis + JWT HS256 → fake"),
                     ("noauth_rs", "Portcullis, auth off, RS256 token sent → fake"),
                     ("jwt_rs256", "Portcullis + JWT RS256 (cached) → fake"),
                     ("plain_route", "Portcullis, plain route (alias off) → fake"),
                     ("alias_route", "Portcullis, alias route (model rewritten) → fake"),
                     ("jwt_limit_memory", "Portcullis + JWT + limiter, memory store → fake"),
                     ("jwt_limit_redis", "Portcullis + JWT + limiter, Redis store (local leases, the default) → fake"),
                     ("jwt_limit_redis_nolease", "Portcullis + JWT + limiter, Redis store, leases off → fake"),
                     ("litellm", "LiteLLM proxy → fake")):
        if k not in med:
            continue
        m = med[k]
        lines.append(f"| {label} | {m['rps']:.0f} | {m['p50']:.2f} | {m['p99']:.2f} | {m['p999']:.2f} | {m['cpu_us']:.1f} |")
    # The machine is shared (two cores: wrk, the fake provider and the proxy), so a proxy's
    # req/s also moves with what its requests and answers cost the other two, and with the time
    # all three wait at once. Medians over rounds, µs per request.
    split = [k for k in ("direct", "gateway", "gateway_bare", "nginx", "haproxy", "nginx_token", "full", "nginx_real", "full_real") if k in med]
    if "direct" in split:
        lines += ["", "Where each request's CPU went, the whole machine (µs per request, medians over rounds): the proxy, "
                  "the fake provider behind it, wrk, and the two cores' idle time. Req/s is about two cores over their sum.", "",
                  "| target | proxy | fake provider | wrk | idle | sum |", "|---|---|---|---|---|---|"]
        for k in split:
            m = med[k]
            proxy = 0.0 if k == "direct" else m["cpu_us"]
            label = {"direct": "fake provider directly", "gateway": "Portcullis (plain)",
                     "gateway_bare": "Portcullis (plain, configured as the peers)", "nginx": "nginx", "haproxy": "HAProxy",
                     "nginx_token": "nginx, sent the full pipeline's bytes", "full": "Portcullis, full pipeline",
                     "nginx_real": "nginx, real heads", "full_real": "Portcullis, full pipeline, real heads"}[k]
            lines.append(f"| {label} | {'–' if k == 'direct' else f'{proxy:.1f}'} | {m['fake_us']:.1f} | {m['client_cpu_us']:.1f} | "
                         f"{m['idle_us']:.1f} | {proxy + m['fake_us'] + m['client_cpu_us'] + m['idle_us']:.1f} |")
    lines += [
        "",
        f"- **Portcullis / nginx req/s: {ratio_ngx:.2f}×** (target ≥ 0.8×, goal ≥ 1.0×)",
        f"- **Portcullis plain path / HAProxy req/s: {gw_vs_hap:.2f}×** (target ≥ 1.0×; {spread('gateway', 'haproxy', 1.0)})",
    ]
    if bare_vs_hap is not None:
        lines.append(
            f"- **The same, configured alike** (Portcullis adding no header of its own, as HAProxy's plain configuration adds "
            f"none): **{bare_vs_hap:.2f}×** ({spread('gateway_bare', 'haproxy', 1.0)}); the line above is Portcullis's "
            f"default configuration (request id both ways, X-Forwarded-For/-Proto upstream, x-portcullis-provider)")
    lines += [
        f"- **Full pipeline / nginx plain proxy req/s: {full_vs_ngx:.2f}×** (target ≥ 1.0×; {spread('full', 'nginx', 1.0)}); full / Portcullis plain path: {full_vs_plain:.2f}×",
        f"- Full pipeline / nginx plain proxy, server CPU per request: {cpu_pair('full', 'nginx')} (lower is cheaper; "
        f"Portcullis plain path / HAProxy {cpu_pair('gateway', 'haproxy')})",
        (f"- Full pipeline / nginx sent the same request bytes (the bearer token too, which nginx passes on unread; the "
         f"line above sends nginx none, as the issue measured it): req/s {full_vs_ngx_token:.2f}× ({spread('full', 'nginx_token')}), "
         f"server CPU per request {cpu_pair('full', 'nginx_token')}. The token alone costs the client, the kernel and a "
         f"proxy: nginx {pair('nginx_token', 'nginx', 'rps'):.2f}× req/s with it, Portcullis with auth off "
         f"{pair('noauth_hs', 'gateway', 'rps'):.2f}×"
         if full_vs_ngx_token is not None and "noauth_hs" in rounds else "- (nginx with the full pipeline's request bytes: not run)"),
        (f"- **Full pipeline / nginx with real heads: req/s {pair('full_real', 'nginx_real', 'rps'):.2f}×** "
         f"({spread('full_real', 'nginx_real', 1.0)}), server CPU per request {cpu_pair('full_real', 'nginx_real')}: wrk sends "
         f"the OpenAI Python SDK's header lines (`sdk.lua`, 18 with Host and the token) and a second fake answers with the 23 "
         f"OpenAI's API adds (`--response-headers openai`), both proxies sent the same bytes. The lines above use the smallest "
         f"heads that work (4 request lines, 4 answer lines), where a proxy's per-line cost hardly shows"
         if "full_real" in rounds and "nginx_real" in rounds else "- (real heads: not run)"),
        f"- Portcullis / direct req/s: {ratio_direct:.2f}×",
        f"- Added latency vs direct at full load: p50 {p50_over:+.2f} ms, p99 {p99_over:+.2f} ms",
        f"- **Added latency vs direct at half load** ({half_rps:.0f} req/s = {half_rps / med['gateway']['rps']:.2f}× Portcullis's maximum; "
        f"{half_conns} connections, 2 ms think time; {a.latency_rounds} interleaved rounds): p50 {half_over['p50']:+.2f} ms, **p99 {half_over['p99']:+.2f} ms** (target ≤ 1 ms), "
        f"p99.9 {half_over['p999']:+.2f} ms; the same paced load through nginx: p50 {half_added['nginx']['p50']:+.2f} ms, "
        f"p99 {half_added['nginx']['p99']:+.2f} ms; HAProxy: p50 {half_added['haproxy']['p50']:+.2f} ms, p99 {half_added['haproxy']['p99']:+.2f} ms "
        f"(wrk fires paced requests on its millisecond timer ticks, so they arrive in bursts: the direct path's own p50 is "
        f"{statistics.median(x['p50'] for x in half['direct']):.2f} ms at this load, where one request costs the fake ~0.02 ms; "
        "a proxy adds its share of each burst's work and two wake-ups a request)",
        (f"- **The same, as deployed** (Portcullis `workers: auto`, nginx and HAProxy with a worker or thread per core, "
         f"{deployed[0]} connections: {deployed[1]:.0f} req/s = {deployed[1] / med['gateway_auto']['rps']:.2f}× that Portcullis's "
         f"maximum of {med['gateway_auto']['rps']:.0f}): p50 {deployed[2]['gateway_auto']['p50']:+.2f} ms, "
         f"**p99 {deployed[2]['gateway_auto']['p99']:+.2f} ms** (context: the target is read from the one-worker line above), p99.9 {deployed[2]['gateway_auto']['p999']:+.2f} ms; "
         f"nginx: p50 {deployed[2]['nginx_auto']['p50']:+.2f} ms, p99 {deployed[2]['nginx_auto']['p99']:+.2f} ms; HAProxy: p50 "
         f"{deployed[2]['haproxy_auto']['p50']:+.2f} ms, p99 {deployed[2]['haproxy_auto']['p99']:+.2f} ms (a second event loop "
         "takes half of each burst)" if deployed else "- (half load as deployed: not run)"),
        (f"- Context, as deployed on {os.cpu_count()} cores (a worker or thread per core, the same wrk load): Portcullis "
         f"{med['gateway_auto']['rps']:.0f} req/s, {pair('gateway_auto', 'nginx_auto', 'rps'):.2f}× nginx "
         f"({spread('gateway_auto', 'nginx_auto')}) and {pair('gateway_auto', 'haproxy_auto', 'rps'):.2f}× HAProxy "
         f"({spread('gateway_auto', 'haproxy_auto')}); CPU a request {med['gateway_auto']['cpu_us']:.1f}, "
         f"{med['nginx_auto']['cpu_us']:.1f} and {med['haproxy_auto']['cpu_us']:.1f} µs. The second core is shared with "
         "wrk and the fake, so a second worker gains what their idle moments leave"
         if all(k in med for k in ("gateway_auto", "nginx_auto", "haproxy_auto")) else "- (the proxies as deployed: not run)"),
        (f"- **Portcullis plain path / LiteLLM proxy req/s: {pair('gateway', 'litellm', 'rps'):.0f}×** (target ≥ 100×); "
         f"LiteLLM timed-out requests per round (wrk's 2 s timeout): {lit_timeouts:.0f}"
         if "litellm" in rounds else "- LiteLLM proxy: not installed (run.sh installs it with pip; it failed or was skipped)"),
        f"- Non-2xx responses across all runs: {errors}",
        f"- JWT auth cost (same run, same request bytes, auth on / off): HS256 {hs_ratio:.2f}× req/s "
        f"({(1 - hs_ratio) * 100:+.1f}% cost, {hs_cpu:+.1f} µs CPU/req; target ≤ 5%), RS256 with the token cache "
        f"{rs_ratio:.2f}× ({(1 - rs_ratio) * 100:+.1f}% cost, {rs_cpu:+.1f} µs CPU/req; target ≤ 10%)",
        f"- Alias rewrite cost (same run, same request bytes, alias route / plain route): {alias_ratio:.3f}× req/s "
        f"({(1 - alias_ratio) * 100:+.1f}% cost, {alias_cpu:+.1f} µs CPU/req, p50 {alias_p50:+.2f} ms, p99 {alias_p99:+.2f} ms; "
        f"target ≤ 3%)",
        f"- Limiter cost vs JWT alone (same run; rpm + per-user rpm + tokens/min, settled with usage): memory store "
        f"{lim['jwt_limit_memory'][0]:.3f}× req/s, p50 {lim['jwt_limit_memory'][1]:+.2f} ms, p99 {lim['jwt_limit_memory'][2]:+.2f} ms, "
        f"{lim['jwt_limit_memory'][3]:+.1f} µs CPU/req; Redis store {lim['jwt_limit_redis'][0]:.3f}× req/s, "
        f"p50 {lim['jwt_limit_redis'][1]:+.2f} ms (target ≤ 0.3 ms), p99 {lim['jwt_limit_redis'][2]:+.2f} ms, "
        f"{lim['jwt_limit_redis'][3]:+.1f} µs CPU/req, Redis commands sent per request {redis_per_request:.3f} (local leases: most requests "
        f"need no script call); Redis store with leases off {lim['jwt_limit_redis_nolease'][0]:.3f}× req/s, "
        f"p50 {lim['jwt_limit_redis_nolease'][1]:+.2f} ms, p99 {lim['jwt_limit_redis_nolease'][2]:+.2f} ms, "
        f"{lim['jwt_limit_redis_nolease'][3]:+.1f} µs CPU/req, Redis commands sent per request {per_request['jwt_limit_redis_nolease']:.3f} "
        f"(target ≤ 1: one EVALSHA per worker per loop iteration decides and settles every request of that iteration); "
        f"full pipeline {per_request['full']:.3f}",
        f"- **Limiter's added latency at half load** (vs JWT alone, the same {lim_conns} paced connections, 2 ms think time; "
        f"{lim_half_rps:.0f} req/s = half of the Redis store's maximum): Redis store **p50 {lim_half['jwt_limit_redis']['p50']:+.2f} ms** "
        f"(target ≤ 0.3 ms), p99 {lim_half['jwt_limit_redis']['p99']:+.2f} ms; leases off p50 "
        f"{lim_half['jwt_limit_redis_nolease']['p50']:+.2f} ms, p99 {lim_half['jwt_limit_redis_nolease']['p99']:+.2f} ms; memory store p50 "
        f"{lim_half['jwt_limit_memory']['p50']:+.2f} ms, p99 {lim_half['jwt_limit_memory']['p99']:+.2f} ms",
        f"- **JWT + Redis limiter / nginx plain proxy req/s: {redis_vs_nginx:.2f}×** (target ≥ 0.9×; {spread('jwt_limit_redis', 'nginx', 0.9)}); with leases off "
        f"{nolease_vs_nginx:.2f}×",
    ]
    if same:
        lines += [
            f"- Context, not a target: the peers doing the header work Portcullis's plain path does (a request id generated, "
            f"sent upstream and returned; X-Forwarded-For and -Proto set) cost nginx {100 * (1 - same['ngx_cost']):.0f}% "
            f"and HAProxy {100 * (1 - same['hap_cost']):.0f}% of their req/s. Against them: Portcullis plain path / HAProxy "
            f"{same['gw_hap']:.2f}×, / nginx {same['gw_ngx']:.2f}×; full pipeline / nginx {same['full_ngx']:.2f}×; "
            f"JWT + Redis limiter / nginx {same['redis_ngx']:.2f}×. The targets above are judged against the plain "
            "configurations, as the issue measured them.",
        ]
    lines += [
        "",
        "## SSE: per-event delay and time to first event",
        "",
        f"`Benchmarks/sse.py`: {sse_rounds['direct'][0]['events'] // 1 if sse_rounds['direct'] else 0} events per round, 32 concurrent streams of "
        "200 tokens, one event every 5 ms; the fake provider stamps each event with its CLOCK_MONOTONIC send time",
        "(`x-fake-stamp`), the client timestamps each event as it reads it. Delay = arrival − send; added = proxy − direct",
        f"(medians of {a.latency_rounds} interleaved rounds, every other one in reverse order). First event: from sending the request (new connection) to the first event.",
        f"CPU stolen by the hypervisor during this section: median {100 * statistics.median(sse_stolen):.0f}%, "
        f"max {100 * max(sse_stolen):.0f}% (the direct path's own delay p99 says as much: a few tenths of a ms when quiet).",
        "",
        "| path | delay p50 ms | p99 ms | p99.9 ms | first event ms | added p50 | added p99 | added first event |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for k, label in (("direct", "direct"), ("gateway", "Portcullis"), ("full", "Portcullis, full pipeline"),
                     ("nginx", "nginx"), ("haproxy", "HAProxy (defaults)"),
                     ("haproxy_nodelay", "HAProxy, `option http-no-delay`")):
        m = sse_med[k]
        ad = sse_added.get(k)
        tail = f"{ad['p50']:+.3f} | {ad['p99']:+.3f} | {ad['first']:+.3f}" if ad else "– | – | –"
        lines.append(f"| {label} | {m['p50']:.3f} | {m['p99']:.3f} | {m['p999']:.3f} | {m['first']:.3f} | {tail} |")
    lines += [
        "",
        f"- **SSE added per-event delay p99 (Portcullis): {sse_added['gateway']['p99']:+.3f} ms** (target ≤ 1 ms); "
        f"**added time to first event: {sse_added['gateway']['first']:+.3f} ms** (target ≤ 0.2 ms); streams that failed: {sse_failed}",
        "",
        "## Anthropic adapter (streaming)",
        "",
        "The same alias served by an OpenAI-format target and by an Anthropic (Messages API) target translated",
        "event by event; 20 sequential streams of 2,000 events each, no provider delays:",
        "",
        "| target | TTFB ms | gateway CPU µs/event | client gap p50 ms | p99 ms |",
        "|---|---|---|---|---|",
        f"| OpenAI-format | {t_oa:.2f} | {ev_oa[0]:.2f} | {ev_oa[1]:.3f} | {ev_oa[2]:.3f} |",
        f"| Anthropic, translated | {t_an:.2f} | {ev_an[0]:.2f} | {ev_an[1]:.3f} | {ev_an[2]:.3f} |",
        f"| added by translation | {t_an - t_oa:+.2f} | {ev_an[0] - ev_oa[0]:+.2f} | {ev_an[1] - ev_oa[1]:+.3f} | {ev_an[2] - ev_oa[2]:+.3f} |",
        "",
        "## Streaming",
        "",
        "Median time to the first SSE event over 30 sequential streaming requests (new connection each):",
        "",
        "| path | TTFB ms | added vs direct |",
        "|---|---|---|",
        f"| direct | {t_direct:.2f} | – |",
        f"| Portcullis | {t_gw:.2f} | {t_gw - t_direct:+.2f} |",
        f"| nginx | {t_ngx:.2f} | {t_ngx - t_direct:+.2f} |",
        "",
        f"## Memory with {n_idle} open idle streams",
        "",
        "| process | RSS before | RSS with streams open | per stream |",
        "|---|---|---|---|",
        f"| Portcullis | {gw_rss[0] / 1024:.1f} MiB | {gw_rss[1] / 1024:.1f} MiB | {(gw_rss[1] - gw_rss[0]) / n_idle:.1f} KiB |",
        f"| nginx worker | {ngx_rss[0] / 1024:.1f} MiB | {ngx_rss[1] / 1024:.1f} MiB | {(ngx_rss[1] - ngx_rss[0]) / n_idle:.1f} KiB |",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
