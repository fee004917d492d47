"""Hostile clients: a reader that stops, one address holding many connections, file-descriptor
exhaustion. Each is refused or cut cleanly, counted, and never stalls anyone else."""
import os
import resource
import socket
import subprocess
import time

from conftest import BIN, chat_body, connection_refused, free_port, raw_request, render_config, wait_port
from httpio import post

CHAT = "/v1/chat/completions"


def metrics(port):
    return raw_request(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").decode()


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_a_reader_that_stops_is_cut_after_the_idle_timeout(start_gateway, fake):
    gw = start_gateway(routes=[{"path": CHAT, "provider": "local",
                                "timeouts": {"connect": "2s", "first_byte": "5s", "idle": "1s", "total": "60s"}}], workers=1)
    body = chat_body(stream=True)
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    s.sendall((f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nx-fake-tokens: 200000\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
    time.sleep(0.5)
    assert fake.stats()["active_streams"] >= 1
    time.sleep(2.5)                                   # never reads: cut after 1 s without progress
    got, deadline = 0, time.time() + 10
    while time.time() < deadline:                     # what was buffered, then the end
        try:
            chunk = s.recv(1 << 20)
        except ConnectionResetError:
            break
        if not chunk:
            break
        got += len(chunk)
    s.close()
    assert got < 8 * 1024 * 1024, "the stream should have been cut, not delivered"
    text = metrics(gw.port)
    assert "portcullis_slow_clients_cut_total 1" in text
    assert 'outcome="client_abort"' in text
    # The provider's stream was closed with it.
    deadline = time.time() + 3
    while time.time() < deadline and fake.stats()["active_streams"] > 0:
        time.sleep(0.05)
    assert fake.stats()["active_streams"] == 0
    assert "portcullis_open_streams 0" in metrics(gw.port), "an aborted stream must leave the gauge"
    # A client that reads slowly but steadily is not cut (each read restarts the idle clock).
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    s.sendall((f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nx-fake-tokens: 3000\r\nConnection: close\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
    data = b""
    while True:
        time.sleep(0.3)                               # 0.3 s between reads < idle 1 s
        chunk = s.recv(32768)
        if not chunk:
            break
        data += chunk
    s.close()
    assert data.endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n")


def test_one_client_address_is_capped(start_gateway):
    gw = start_gateway(server_extra="max_connections_per_client: 3")
    # From an address of its own (127.0.0.3): the harness's own connections (start-up probe,
    # scrapes) come from 127.0.0.1 and may still be open on a loaded machine. Each held
    # connection is answered once, so it is known to be accepted before the fourth is tried.
    client = "127.0.0.3"
    held = []
    for _ in range(3):
        h = socket.create_connection(("127.0.0.1", gw.port), timeout=10, source_address=(client, 0))
        h.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert h.recv(100).startswith(b"HTTP/1.1 200"), "a held connection was not served"
        held.append(h)
    assert connection_refused(gw.port, source=client), "a fourth connection from one address must be refused"
    for h in held:
        h.close()
    text = metrics(gw.port)
    assert 'portcullis_rejected_connections_total{limit="max_connections_per_client"} 1' in text
    # Closed connections give their places back (the gateway may take a moment to see them closed).
    deadline = time.time() + 10
    while time.time() < deadline and connection_refused(gw.port, source=client):
        time.sleep(0.1)
    assert post(gw.port, CHAT, chat_body()).status == 200


def test_file_descriptor_exhaustion_neither_crashes_nor_spins(tmp_path, fake):
    port = free_port()
    cfg = render_config(port, {"local": {"base_url": f"http://127.0.0.1:{fake.port}"}},
                        [{"path": CHAT, "provider": "local"}]).replace("workers: 2", "workers: 1")
    (tmp_path / "c.yaml").write_text(cfg)

    def low_fd_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (48, 48))

    log = open(tmp_path / "gw.log", "w")
    proc = subprocess.Popen([os.path.join(BIN, "portcullis"), "--config", str(tmp_path / "c.yaml")],
                            stdout=log, stderr=subprocess.STDOUT, preexec_fn=low_fd_limit)
    try:
        wait_port(port, proc)
        clients = []
        for _ in range(60):                           # more than the process has descriptors for
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex(("127.0.0.1", port))
            clients.append(c)
        time.sleep(0.5)
        before = cpu_seconds(proc.pid)
        time.sleep(2.0)
        used = cpu_seconds(proc.pid) - before
        assert proc.poll() is None, "the gateway must not exit"
        assert used < 0.5, f"{used:.2f} s of CPU in 2 s: the accept loop is spinning"
        for c in clients:
            c.close()
        time.sleep(0.5)
        assert post(port, CHAT, chat_body()).status == 200, "serves again once descriptors are free"
        assert "portcullis_accept_fd_exhausted_total 0" not in metrics(port)
        assert open_fds(proc.pid) < 40
    finally:
        proc.kill()
        proc.wait()
        log.close()
