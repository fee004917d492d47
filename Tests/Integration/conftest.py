"""Integration-test harness: the real `portcullis` binary, the real FakeProvider, real sockets.

Every process binds a free loopback port; every wait has a deadline; every process is killed
at teardown. Binaries come from $PORTCULLIS_BIN_DIR (default: .build/debug).
"""
import json
import os
import resource
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("PORTCULLIS_BIN_DIR", os.path.join(ROOT, ".build", "debug"))

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if soft < min(hard, 8192):
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"port {port} did not open in {timeout}s")


class Fake:
    """A running FakeProvider."""

    def __init__(self, port, proc):
        self.port = port
        self.proc = proc

    def get(self, path):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
            return json.loads(r.read())

    def stats(self):
        return self.get("/_fake/stats")

    def last_request(self):
        return self.get("/_fake/last-request")

    def reset(self):
        return self.get("/_fake/reset")


@pytest.fixture(scope="session")
def fake():
    port = free_port()
    proc = subprocess.Popen([os.path.join(BIN, "FakeProvider"), "--listen", f"127.0.0.1:{port}", "--workers", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc)
        yield Fake(port, proc)
    finally:
        proc.kill()
        proc.wait()


class Gateway:
    def __init__(self, port, proc, config_path, log_path):
        self.port = port
        self.proc = proc
        self.config_path = config_path
        self.log_path = log_path

    @property
    def base(self):
        return f"http://127.0.0.1:{self.port}"

    def log(self):
        with open(self.log_path, "r", errors="replace") as f:
            return f.read()

    def wait_log(self, needle, timeout=2.0):
        """The log once it contains `needle` (the access line is written just after the response)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            text = self.log()
            if needle in text:
                return text
            time.sleep(0.02)
        return self.log()


    def access(self):
        """The access-log records (JSON lines) written so far."""
        out = []
        for line in self.log().splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def wait_access(self, pred, timeout=2.0):
        """The first access record matching `pred` (None after `timeout`)."""
        deadline = time.time() + timeout
        while True:
            for rec in self.access():
                if pred(rec):
                    return rec
            if time.time() > deadline:
                return None
            time.sleep(0.02)


def fd_targets(pid):
    """What each open descriptor of a process is (`socket:[inode]`, a path, …), fd → target."""
    out = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out[int(fd)] = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            pass                                      # closed between the listing and the read
    return out


def settled_fd_count(pid, at_most=None, timeout=3.0):
    """A process's open descriptors once closes in flight have landed: the fewest seen while
    polling for `timeout` s, or as soon as the count is `at_most` or fewer. A connection the
    peer has just closed (the readiness probe, a client that said goodbye) stays open in the
    gateway until its loop reads the EOF, which on a loaded machine can take a while; a
    descriptor that leaked stays open however long one waits. Returns (count, targets)."""
    deadline = time.monotonic() + timeout
    best = None
    while True:
        targets = fd_targets(pid)
        if best is None or len(targets) < len(best):
            best = targets
        if (at_most is not None and len(best) <= at_most) or time.monotonic() >= deadline:
            return len(best), best
        time.sleep(0.05)


def rss_kib(pid):
    """Resident memory of a process (KiB)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def connection_refused(port, source="127.0.0.1"):
    """Opens one more connection (from the loopback address `source`) and asks for /healthz:
    True when the gateway reset it unserved."""
    try:
        # The reset can arrive before connect() returns (the gateway accepts and resets at once).
        extra = socket.create_connection(("127.0.0.1", port), timeout=3, source_address=(source, 0))
    except ConnectionResetError:
        return True
    try:
        extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        got = extra.recv(100)
    except (ConnectionResetError, BrokenPipeError):
        got = b""
    extra.close()
    return got == b""


def render_config(port, providers, routes, server_extra="", log_access="true"):
    server = {"listen": f'["127.0.0.1:{port}"]', "workers": "2", "max_connections": "4000",
              "header_timeout": "2s", "keepalive_timeout": "10s", "drain_timeout": "2s"}
    for l in server_extra.strip().splitlines():
        k, v = l.split(":", 1)
        server[k.strip()] = v.strip()
    lines = ["server:"] + [f"  {k}: {v}" for k, v in server.items()]
    lines.append("providers:")
    for name, spec in providers.items():
        lines.append(f"  {name}: {json.dumps(spec)}")
    lines.append("routes:")
    for r in routes:
        lines.append(f"  - {json.dumps(r)}")
    lines += ["log:", "  level: debug", f"  access: {log_access}"]
    return "\n".join(lines) + "\n"


@pytest.fixture
def start_gateway(fake, tmp_path):
    """Factory: start_gateway(providers=..., routes=..., env=...) → Gateway (killed at teardown)."""
    procs = []

    def start(providers=None, routes=None, server_extra="", env=None, workers=None, extra_yaml="", log_access="true"):
        port = free_port()
        providers = providers or {"local": {"base_url": f"http://127.0.0.1:{fake.port}", "kind": "openai"}}
        routes = routes or [{"path": "/v1/chat/completions", "provider": "local",
                             "timeouts": {"connect": "2s", "first_byte": "5s", "idle": "5s", "total": "30s"}}]
        cfg = render_config(port, providers, routes, server_extra, log_access=log_access) + extra_yaml
        if workers:
            cfg = cfg.replace("  workers: 2", f"  workers: {workers}")
        path = tmp_path / f"gateway-{port}.yaml"
        path.write_text(cfg)
        log_path = tmp_path / f"gateway-{port}.log"
        e = dict(os.environ)
        e.update(env or {})
        logf = open(log_path, "w")
        proc = subprocess.Popen([os.path.join(BIN, "portcullis"), "--config", str(path)],
                                stdout=logf, stderr=subprocess.STDOUT, env=e)
        procs.append((proc, logf))
        wait_port(port, proc)
        return Gateway(port, proc, str(path), str(log_path))

    yield start
    for proc, logf in procs:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        logf.close()


@pytest.fixture
def gateway(start_gateway):
    return start_gateway()


def raw_request(port, data, timeout=5.0, read_until_close=True):
    """Sends raw bytes, returns everything read until the peer closes (or timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                b = s.recv(65536)
            except socket.timeout:
                break
            if not b:
                break
            chunks.append(b)
            if not read_until_close:
                break
        return b"".join(chunks)


def chat_body(stream=False, include_usage=False, extra=None):
    body = {"model": "chat-default", "messages": [{"role": "user", "content": "Open the gate."}]}
    if stream:
        body["stream"] = True
        if include_usage:
            body["stream_options"] = {"include_usage": True}
    body.update(extra or {})
    return json.dumps(body).encode()
