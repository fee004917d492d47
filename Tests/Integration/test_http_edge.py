"""Client-side protocol handling over real sockets: malformed requests, limits, slowloris."""
import json
import socket
import time

from conftest import raw_request


def status_and_body(raw):
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), head.decode("latin-1").lower(), body


def test_malformed_request_is_400_json_and_closes(gateway):
    raw = raw_request(gateway.port, b"GET / HTTP/1.1\r\nHost : x\r\n\r\n")
    status, head, body = status_and_body(raw)
    assert status == 400
    assert "connection: close" in head
    assert json.loads(body)["error"]["type"] == "invalid_request_error"


def test_cl_and_te_together_is_400(gateway):
    raw = raw_request(gateway.port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert status_and_body(raw)[0] == 400


def test_http2_preface_is_505(gateway):
    raw = raw_request(gateway.port, b"GET / HTTP/2.0\r\nHost: x\r\n\r\n")
    assert status_and_body(raw)[0] == 505


def test_header_section_too_large_is_431(gateway):
    raw = raw_request(gateway.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
    assert status_and_body(raw)[0] == 431


def test_request_line_too_long_is_414(gateway):
    raw = raw_request(gateway.port, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status_and_body(raw)[0] == 414


def test_slowloris_gets_408(start_gateway):
    gw = start_gateway(server_extra="")  # header_timeout: 2s in the test config
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHo")
    t = time.monotonic()
    time.sleep(0.5)
    s.sendall(b"st: x\r\n")  # trickle: the header timeout is not reset by progress
    data = b""
    while True:
        b = s.recv(4096)
        if not b:
            break
        data += b
    took = time.monotonic() - t
    s.close()
    assert status_and_body(data)[0] == 408
    assert 1.3 < took < 3.5, took


def test_idle_keepalive_connection_is_closed_quietly(start_gateway):
    gw = start_gateway(server_extra="keepalive_timeout: 300ms")
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    first = s.recv(4096)
    assert b"200 OK" in first
    t = time.monotonic()
    assert s.recv(4096) == b""  # closed by the gateway after keepalive_timeout, no bytes
    took = time.monotonic() - t
    s.close()
    assert 0.2 < took < 2, took


def test_healthz_and_metrics(gateway):
    status, _, body = status_and_body(raw_request(gateway.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
    assert status == 200 and json.loads(body) == {"status": "ok"}
    status, _, body = status_and_body(raw_request(gateway.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
    assert status == 200 and b"portcullis_requests_total" in body


def test_unknown_route_is_404(gateway):
    status, _, body = status_and_body(raw_request(gateway.port, b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
    assert status == 404 and json.loads(body)["error"]["code"] == "not_found"


def test_garbage_does_not_crash_the_gateway(gateway):
    for junk in [b"\x00\x01\x02\r\n\r\n", b"\r\n\r\n\r\n", b"GET\r\n\r\n", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nab",
                 b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", b"\xff" * 100 + b"\r\n\r\n"]:
        raw_request(gateway.port, junk, timeout=3)
    status, _, _ = status_and_body(raw_request(gateway.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
    assert status == 200
    assert gateway.proc.poll() is None


def test_sigterm_drains_in_flight_streams_then_exits(start_gateway):
    import signal
    from httpio import read_response
    from conftest import chat_body
    gw = start_gateway()
    idle = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
    idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"200 OK" in idle.recv(4096)
    body = chat_body(stream=True)
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    s.sendall((f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nx-fake-inter-event-delay-ms: 100\r\n"
               f"x-fake-tokens: 8\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body)
    first = []
    t = time.monotonic()
    r = None
    def on_first():
        first.append(time.monotonic())
        gw.proc.send_signal(signal.SIGTERM)   # mid-stream
    r = read_response(s, on_first_body=on_first)
    assert first, "no event before the signal"
    assert r.status == 200 and r.complete, "the in-flight stream must finish"
    assert r.body.rstrip().endswith(b"data: [DONE]")
    assert s.recv(10) == b"", "the drained connection is closed after its response"
    assert idle.recv(10) == b"", "idle keep-alive connections are closed at drain"
    assert gw.proc.wait(timeout=5) == 0
    took = time.monotonic() - t
    assert took < 4, took
    try:
        socket.create_connection(("127.0.0.1", gw.port), timeout=1).close()
        refused = False
    except OSError:
        refused = True
    assert refused, "no new connections after the drain"
