"""Providers that misbehave at the byte level: garbage, a broken chunked body, a truncated SSE
event, a huge declared body, a body that never ends. For each: a clear error (or a visible
truncation) for the client, no crash, no leaked fd, and the next request is served."""
import socket
import threading
import time

import pytest

from conftest import chat_body, rss_kib, settled_fd_count
from httpio import post, read_response

CHAT = "/v1/chat/completions"


class RawProvider:
    """A provider that answers every request with `script(conn)` (raw bytes, then whatever it does)."""

    def __init__(self, script):
        self.script = script
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self.handle, args=(c,), daemon=True).start()

    def handle(self, c):
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                chunk = c.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            while len(body) < length:
                body += c.recv(65536)
            self.script(c)
        except OSError:
            pass

    def close(self):
        self.sock.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass


def garbage(c):
    c.sendall(b"SSH-2.0-OpenSSH_9.2\r\n\x00\xff\xfe garbage")
    c.close()


def bad_chunked(c):
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"5\r\n{\"a\":\r\nzz-not-hex\r\n")
    time.sleep(0.5)
    c.close()


def truncated_sse(c):
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"1c\r\ndata: {\"choices\":[{\"delta\":\r\n")
    c.close()                                         # mid-event, mid-chunk


def huge(c):
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 2147483648\r\n\r\n")
    block = b"x" * 65536
    for _ in range(320):                              # 20 MiB of the declared 2 GiB, then gone
        c.sendall(block)
    c.close()


def never_ends(c):
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{\"partial\":")   # close-delimited
    time.sleep(30)                                    # never closes; the route's idle timeout ends it


SCENARIOS = {
    "garbage": (garbage, "502"),
    "bad_chunked": (bad_chunked, "truncated"),
    "truncated_sse": (truncated_sse, "sse_error"),
    "huge_body": (huge, "truncated"),
    "never_ends": (never_ends, "truncated"),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_misbehaving_provider(start_gateway, fake, name):
    script, expect = SCENARIOS[name]
    raw = RawProvider(script)
    try:
        gw = start_gateway(
            providers={"bad": {"base_url": f"http://127.0.0.1:{raw.port}"},
                       "local": {"base_url": f"http://127.0.0.1:{fake.port}"}},
            routes=[{"path": CHAT, "provider": "bad",
                     "timeouts": {"connect": "1s", "first_byte": "2s", "idle": "1s", "total": "20s"}},
                    {"path": "/ok/chat/completions", "provider": "local", "upstream_path": CHAT}],
            workers=1)
        fds_before, _ = settled_fd_count(gw.proc.pid, timeout=0.5)   # without the readiness probe
        rss_before = rss_kib(gw.proc.pid)
        started = time.monotonic()
        s = socket.create_connection(("127.0.0.1", gw.port), timeout=15)
        body = chat_body(stream=(expect == "sse_error"))
        s.sendall((f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body)
        data = b""
        while True:
            try:
                chunk = s.recv(1 << 20)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            data += chunk
        s.close()
        took = time.monotonic() - started
        assert took < 12, f"{name}: the client waited {took:.1f} s"
        if expect == "502":
            assert data.startswith(b"HTTP/1.1 502"), data[:200]
            assert b'"error"' in data
        elif expect == "sse_error":
            assert data.startswith(b"HTTP/1.1 200"), data[:200]
            assert b"event: error" in data and data.endswith(b"0\r\n\r\n"), data[-300:]
        else:
            assert data.startswith(b"HTTP/1.1 200"), data[:200]
            # The truncation is visible: no terminating chunk, or fewer bytes than declared.
            assert not data.endswith(b"0\r\n\r\n") or b"event: error" in data
        assert gw.proc.poll() is None
        # The gateway serves on, its fds come back, and 20 MiB of body did not stay in memory.
        assert post(gw.port, "/ok/chat/completions", chat_body()).status == 200
        # One more: the pooled connection to the fake provider.
        fds_after, targets = settled_fd_count(gw.proc.pid, at_most=fds_before + 1)
        assert fds_after <= fds_before + 1, f"{name}: {fds_before} fds before, now {targets}"
        assert rss_kib(gw.proc.pid) - rss_before < 16 * 1024
    finally:
        raw.close()

