"""The proxy path end to end: real gateway binary, real fake provider, real sockets."""
import json
import re
import socket
import time
import http.client

from conftest import chat_body, connection_refused, raw_request, rss_kib
from httpio import post, read_response, sse_data

CHAT = "/v1/chat/completions"


def test_non_streaming_completion(gateway, fake):
    r = post(gateway.port, CHAT, chat_body())
    assert r.status == 200
    doc = json.loads(r.body)
    assert doc["object"] == "chat.completion"
    assert doc["usage"]["completion_tokens"] == 5
    assert r.headers["content-type"] == "application/json"
    # A minted id: 32 lowercase hex digits, the same to the provider, the client and the log.
    rid = r.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", rid), rid
    assert dict((k, v) for k, v in fake.last_request()["headers"])["x-request-id"] == rid
    assert gateway.wait_access(lambda rec: rec["request_id"] == rid)
    assert post(gateway.port, CHAT, chat_body()).headers["x-request-id"] != rid


def test_client_request_id_is_kept_and_forwarded(gateway, fake):
    r = post(gateway.port, CHAT, chat_body(), {"X-Request-Id": "client-id-123"})
    assert r.headers["x-request-id"] == "client-id-123"
    sent = dict((k, v) for k, v in fake.last_request()["headers"])
    assert sent["x-request-id"] == "client-id-123"
    r = post(gateway.port, CHAT, chat_body(), {"X-Request-Id": "bad id with spaces"})
    assert r.headers["x-request-id"] != "bad id with spaces"


def test_streaming_first_event_arrives_before_provider_finishes(gateway):
    start = time.monotonic()
    r = post(gateway.port, CHAT, chat_body(stream=True),
             {"x-fake-inter-event-delay-ms": "200", "x-fake-tokens": "3"})
    assert r.status == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["x-accel-buffering"] == "no"
    assert r.headers["cache-control"] == "no-cache"
    assert r.complete
    # 6 events (role, 3 tokens, finish, [DONE]) 200 ms apart: ~1 s in all.
    first = r.events[0][0] - start
    last = r.events[-1][0] - start
    assert first < 0.3, f"first event after {first:.3f}s"
    assert last > 0.9, f"stream ended after {last:.3f}s"
    # Each event left on its own, ~200 ms apart (not batched at the end).
    gaps = [b[0] - a[0] for a, b in zip(r.events, r.events[1:])]
    assert min(gaps) > 0.1, gaps
    events = sse_data(r.body)
    assert events[-1] == (None, "[DONE]")
    assert "".join(json.loads(d)["choices"][0]["delta"].get("content", "") for _, d in events[:-1]
                   if json.loads(d)["choices"]) == "The gate is"


def test_streaming_usage_chunk_passes_through(gateway):
    r = post(gateway.port, CHAT, chat_body(stream=True, include_usage=True))
    events = sse_data(r.body)
    usage = json.loads(events[-2][1])
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 5


def test_large_request_body(gateway):
    big = chat_body(extra={"padding": "x" * (3 * 1024 * 1024)})
    r = post(gateway.port, CHAT, big, deadline=20)
    assert r.status == 200
    assert int(r.headers["x-fake-received-bytes"]) == len(big)


def test_body_over_limit_is_413(start_gateway):
    gw = start_gateway(server_extra="max_body_bytes: 1000")
    r = post(gw.port, CHAT, chat_body(extra={"padding": "x" * 2000}))
    assert r.status == 413
    assert json.loads(r.body)["error"]["code"] == "request_too_large"


def test_chunked_request_body(gateway, fake):
    body = chat_body()
    s = socket.create_connection(("127.0.0.1", gateway.port), timeout=5)
    head = f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
    half = len(body) // 2
    s.sendall(head.encode() + b"%x\r\n" % half + body[:half] + b"\r\n")
    time.sleep(0.05)
    s.sendall(b"%x\r\n" % (len(body) - half) + body[half:] + b"\r\n0\r\n\r\n")
    r = read_response(s)
    s.close()
    assert r.status == 200
    assert int(r.headers["x-fake-received-bytes"]) == len(body)


def test_expect_100_continue(gateway):
    body = chat_body()
    s = socket.create_connection(("127.0.0.1", gateway.port), timeout=5)
    s.sendall(f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n".encode())
    interim = s.recv(100)
    assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
    s.sendall(body)
    r = read_response(s)
    s.close()
    assert r.status == 200


def test_keepalive_reuse_client_and_upstream(gateway, fake):
    before = fake.stats()["connections"]
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=5)
    for _ in range(20):
        conn.request("POST", CHAT, body=chat_body(), headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 200
        json.loads(resp.read())
    sock_before = conn.sock
    conn.request("POST", CHAT, body=chat_body())
    conn.getresponse().read()
    assert conn.sock is sock_before, "client connection was not kept alive"
    conn.close()
    opened = fake.stats()["connections"] - before
    assert opened <= 2, f"{opened} upstream connections for 21 sequential requests"


def test_pipelined_requests_answered_in_order(gateway):
    body = chat_body()
    reqs = b""
    for i in range(3):
        reqs += (f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nX-Request-Id: pipe-{i}\r\n"
                 f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    reqs += b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-Id: pipe-3\r\nConnection: close\r\n\r\n"
    s = socket.create_connection(("127.0.0.1", gateway.port), timeout=5)
    s.sendall(reqs)
    ids = []
    for _ in range(4):
        r = read_response(s)
        assert r.status == 200
        ids.append(r.headers["x-request-id"])
    s.close()
    assert ids == ["pipe-0", "pipe-1", "pipe-2", "pipe-3"]


def test_upstream_down_is_502(start_gateway):
    from conftest import free_port
    dead = free_port()
    gw = start_gateway(providers={"down": {"base_url": f"http://127.0.0.1:{dead}"}},
                       routes=[{"path": CHAT, "provider": "down"}])
    r = post(gw.port, CHAT, chat_body())
    assert r.status == 502
    err = json.loads(r.body)["error"]
    assert err["code"] == "upstream_connect_failed" and err["type"] == "server_error"


def test_first_byte_timeout_is_504(start_gateway, fake):
    gw = start_gateway(routes=[{"path": CHAT, "provider": "local",
                                "timeouts": {"connect": "1s", "first_byte": "300ms", "idle": "5s", "total": "30s"}}])
    t = time.monotonic()
    r = post(gw.port, CHAT, chat_body(), {"x-fake-first-byte-delay-ms": "3000"})
    took = time.monotonic() - t
    assert r.status == 504
    assert json.loads(r.body)["error"]["code"] == "upstream_timeout"
    assert 0.25 < took < 2.0, took


def test_idle_timeout_mid_stream_ends_cleanly_with_error_event(start_gateway):
    gw = start_gateway(routes=[{"path": CHAT, "provider": "local",
                                "timeouts": {"connect": "1s", "first_byte": "5s", "idle": "300ms", "total": "30s"}}])
    r = post(gw.port, CHAT, chat_body(stream=True), {"x-fake-hang-after": "2"})
    assert r.status == 200
    assert r.complete, "chunked body must be terminated cleanly"
    events = sse_data(r.body)
    assert len(events) == 3
    assert events[-1][0] == "error"
    assert json.loads(events[-1][1])["error"]["code"] == "upstream_timeout"
    rec = gw.wait_access(lambda r: r["outcome"] == "stream_error")
    assert rec and rec["detail"] == "timeout_idle", rec


def test_total_timeout(start_gateway):
    gw = start_gateway(routes=[{"path": CHAT, "provider": "local",
                                "timeouts": {"connect": "1s", "first_byte": "5s", "idle": "5s", "total": "600ms"}}])
    r = post(gw.port, CHAT, chat_body(stream=True), {"x-fake-inter-event-delay-ms": "200", "x-fake-tokens": "20"})
    assert r.status == 200 and r.complete
    assert sse_data(r.body)[-1][0] == "error"


def test_upstream_reset_mid_stream_reports_error(gateway):
    r = post(gateway.port, CHAT, chat_body(stream=True), {"x-fake-reset-after": "2"})
    assert r.status == 200 and r.complete
    events = sse_data(r.body)
    assert events[-1][0] == "error"
    assert json.loads(events[-1][1])["error"]["type"] == "server_error"
    want = 'portcullis_requests_total{route="/v1/chat/completions",class="5xx",outcome="stream_error"} 1'
    deadline = time.time() + 2   # recorded when the last byte left (5xx: the stream failed; the client saw 200 then an error event)
    while True:
        metrics = raw_request(gateway.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").decode()
        if want in metrics or time.time() > deadline:
            break
        time.sleep(0.02)
    assert want in metrics, metrics


def test_upstream_reset_before_response_is_502(gateway):
    r = post(gateway.port, CHAT, chat_body(), {"x-fake-reset-after": "0"})
    assert r.status == 502


def test_provider_error_status_passes_through(gateway):
    r = post(gateway.port, CHAT, chat_body(), {"x-fake-status": "429"})
    assert r.status == 429
    assert r.headers["retry-after"] == "1"
    assert json.loads(r.body)["error"]["code"] == "rate_limit_exceeded"


def test_client_disconnect_closes_upstream_within_100ms(gateway, fake):
    before = fake.stats()["aborted_streams"]
    s = socket.create_connection(("127.0.0.1", gateway.port), timeout=5)
    body = chat_body(stream=True)
    s.sendall((f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nx-fake-inter-event-delay-ms: 300\r\nx-fake-tokens: 50\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
    got = b""
    while b"data:" not in got:
        got += s.recv(4096)
    closed_at = time.time()
    s.close()
    deadline = time.time() + 2
    while time.time() < deadline:
        st = fake.stats()
        if st["aborted_streams"] > before:
            break
        time.sleep(0.01)
    assert st["aborted_streams"] == before + 1, st
    lag_ms = st["last_abort_unix_ms"] - closed_at * 1000
    assert lag_ms < 100, f"provider saw the close {lag_ms:.1f} ms after the client left"


def test_header_hygiene(start_gateway, fake):
    gw = start_gateway(providers={"local": {"base_url": f"http://127.0.0.1:{fake.port}", "api_key_env": "TEST_PROVIDER_KEY"}},
                       env={"TEST_PROVIDER_KEY": "sk-provider-secret"})
    r = post(gw.port, CHAT, chat_body(), {
        "Authorization": "Bearer client-token",
        "Proxy-Authorization": "Basic x",
        "Connection": "keep-alive, X-Drop-Me",
        "X-Drop-Me": "1",
        "Keep-Alive": "timeout=5",
        "TE": "trailers",
        "Upgrade": "h2c",
        "X-Forwarded-For": "6.6.6.6",
        "X-Tenant-Id": "evil",
        "x-tenant-id": "evil2",
        "X-Keep-Me": "yes",
    })
    assert r.status == 200
    headers = fake.last_request()["headers"]
    names = [k for k, _ in headers]
    d = dict(headers)
    for gone in ["proxy-authorization", "connection", "x-drop-me", "keep-alive", "te", "upgrade", "x-tenant-id"]:
        assert gone not in names, gone
    assert names.count("authorization") == 1 and d["authorization"] == "Bearer sk-provider-secret"
    assert d["x-forwarded-for"] == "127.0.0.1"
    assert d["x-forwarded-proto"] == "http"
    assert d["x-keep-me"] == "yes"
    assert d["x-request-id"] == r.headers["x-request-id"]
    assert "sk-provider-secret" not in gw.log()


def test_added_headers_can_be_switched_off(start_gateway, fake):
    """`server.upstream_headers: []` and `response_headers: []`: nothing of the gateway's own is
    added (the access log keeps the id), the client's copies are still dropped, and the
    provider's own x-request-id reaches the client, as through a plain proxy."""
    gw = start_gateway(server_extra="upstream_headers: []\nresponse_headers: []")
    r = post(gw.port, CHAT, chat_body(), {"X-Request-Id": "client-1", "X-Forwarded-For": "6.6.6.6",
                                          "X-Forwarded-Proto": "https", "x-fake-request-id": "req_provider_7"})
    assert r.status == 200
    names = [k for k, _ in fake.last_request()["headers"]]
    for gone in ["x-request-id", "x-forwarded-for", "x-forwarded-proto"]:
        assert gone not in names, gone
    assert r.headers["x-request-id"] == "req_provider_7"
    assert "x-portcullis-provider" not in r.headers
    assert gw.wait_access(lambda rec: rec["request_id"] == "client-1")
    r = post(gw.port, CHAT, chat_body())
    assert "x-request-id" not in r.headers and "x-portcullis-provider" not in r.headers
    local = post(gw.port, "/nowhere", chat_body())
    assert local.status == 404 and "x-request-id" not in local.headers
    # One of each: the request id both ways, no forwarding facts, no provider name.
    gw = start_gateway(server_extra="upstream_headers: [request_id]\nresponse_headers: [request_id]")
    r = post(gw.port, CHAT, chat_body(), {"x-fake-request-id": "req_provider_8"})
    d = dict(fake.last_request()["headers"])
    assert d["x-request-id"] == r.headers["x-request-id"] != "req_provider_8"
    assert "x-forwarded-for" not in d and "x-portcullis-provider" not in r.headers


def test_missing_provider_key_is_a_clear_500(start_gateway):
    gw = start_gateway(providers={"local": {"base_url": "http://127.0.0.1:9", "api_key_env": "SURELY_UNSET_KEY_VAR"}})
    r = post(gw.port, CHAT, chat_body())
    assert r.status == 500
    assert "SURELY_UNSET_KEY_VAR" in json.loads(r.body)["error"]["message"]


def test_http10_client_gets_close_delimited_stream(gateway):
    body = chat_body(stream=True)
    out = raw_request(gateway.port, (f"POST {CHAT} HTTP/1.0\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body)
    head, _, rest = out.partition(b"\r\n\r\n")
    assert b"200" in head.split(b"\r\n")[0]
    assert b"transfer-encoding" not in head.lower()
    assert rest.rstrip().endswith(b"data: [DONE]")


def test_slow_client_backpressure_keeps_memory_bounded(gateway, fake):
    """A client that stops reading must stop the gateway reading the provider: a ~50 MB stream
    may not pile up in the gateway; once the client reads again the stream completes intact."""
    body = chat_body(stream=True)
    s = socket.create_connection(("127.0.0.1", gateway.port), timeout=10)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    before = rss_kib(gateway.proc.pid)
    s.sendall((f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nx-fake-tokens: 200000\r\nConnection: close\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
    time.sleep(2.0)  # the provider could have sent everything by now; the client reads nothing
    grown = rss_kib(gateway.proc.pid) - before
    assert fake.stats()["active_streams"] >= 1, "the provider should be blocked mid-stream"
    assert grown < 16 * 1024, f"gateway RSS grew {grown} KiB while the client was not reading"
    total, tail = 0, b""
    deadline = time.time() + 60
    while time.time() < deadline:
        chunk = s.recv(1 << 20)
        if not chunk:
            break
        total += len(chunk)
        tail = (tail + chunk)[-64:]
    s.close()
    assert total > 40 * 1024 * 1024, total
    assert tail.endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n"), tail


def test_connect_timeout_is_504(start_gateway):
    """A provider whose accept queue is full drops our SYNs: the connect timeout answers."""
    blackhole = socket.socket()
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(0)
    port = blackhole.getsockname()[1]
    fillers = []
    for _ in range(4):  # fill the accept queue; further SYNs are dropped, not refused
        f = socket.socket()
        f.setblocking(False)
        f.connect_ex(("127.0.0.1", port))
        fillers.append(f)
    time.sleep(0.2)
    try:
        gw = start_gateway(providers={"slow": {"base_url": f"http://127.0.0.1:{port}"}},
                           routes=[{"path": CHAT, "provider": "slow",
                                    "timeouts": {"connect": "400ms", "first_byte": "5s", "idle": "5s", "total": "30s"}}])
        t = time.monotonic()
        r = post(gw.port, CHAT, chat_body())
        took = time.monotonic() - t
        assert r.status == 504, r.body
        assert "connect" in json.loads(r.body)["error"]["message"]
        assert 0.3 < took < 3, took
    finally:
        for f in fillers:
            f.close()
        blackhole.close()


def test_connections_over_max_are_refused_and_counted(start_gateway):
    gw = start_gateway(server_extra="max_connections: 2", workers=1)
    held = [socket.create_connection(("127.0.0.1", gw.port)) for _ in range(2)]
    time.sleep(0.2)
    assert connection_refused(gw.port), "a connection over max_connections must not be served"
    for h in held:
        h.close()
    time.sleep(0.2)
    metrics = raw_request(gw.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").decode()
    assert 'portcullis_rejected_connections_total{limit="max_connections"} 1' in metrics


def test_provider_restart_is_invisible_to_clients(start_gateway):
    """Pooled connections to a provider that restarted are dead: they are evicted or retried once
    on a fresh connection, never surfaced to the client as an error."""
    import os
    import subprocess
    from conftest import BIN, free_port, wait_port
    port = free_port()
    def run_fake():
        p = subprocess.Popen([os.path.join(BIN, "FakeProvider"), "--listen", f"127.0.0.1:{port}"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(port, p)
        return p
    fake1 = run_fake()
    try:
        gw = start_gateway(providers={"p": {"base_url": f"http://127.0.0.1:{port}"}},
                           routes=[{"path": CHAT, "provider": "p"}], workers=1)
        conn = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
        for _ in range(3):
            assert post(gw.port, CHAT, chat_body(), sock=conn).status == 200
        fake1.kill()
        fake1.wait()
        fake2 = run_fake()
        try:
            for _ in range(3):
                assert post(gw.port, CHAT, chat_body(), sock=conn).status == 200
        finally:
            fake2.kill()
            fake2.wait()
        conn.close()
    finally:
        if fake1.poll() is None:
            fake1.kill()
