"""Operations: whole-config reload on SIGHUP, sd_notify and the watchdog, systemd credentials."""
import http.client
import json
import os
import signal
import socket
import threading
import time

from conftest import chat_body, render_config, settled_fd_count
from httpio import post, sse_data

CHAT = "/v1/chat/completions"


def wait_for(pred, timeout=5.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


def metrics_text(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    c.close()
    return text


def metric(port, name):
    """The value of an unlabelled sample, or every line of a labelled family."""
    lines = [l for l in metrics_text(port).splitlines() if l.startswith(name)]
    for l in lines:
        if l.startswith(name + " "):
            return float(l.split()[-1])
    return lines


def rewrite(gw, fake, routes, server_extra="", extra_yaml=""):
    """Rewrites the gateway's config file in place (same port and workers)."""
    providers = {"local": {"base_url": f"http://127.0.0.1:{fake.port}", "kind": "openai"},
                 "second": {"base_url": f"http://127.0.0.1:{fake.port}/_x/tokens=2", "kind": "openai"}}
    with open(gw.config_path, "w") as f:
        f.write(render_config(gw.port, providers, routes, server_extra) + extra_yaml)


def edit_and_reload(gw, old, new, expect):
    """Replaces `old` by `new` in the gateway's config file, sends SIGHUP, and returns the log once
    it contains `expect`."""
    with open(gw.config_path) as f:
        text = f.read()
    assert old in text, old
    with open(gw.config_path, "w") as f:
        f.write(text.replace(old, new))
    gw.proc.send_signal(signal.SIGHUP)
    return gw.wait_log(expect, timeout=5)


def test_reload_switches_new_requests_while_a_stream_finishes_on_the_old_generation(start_gateway, fake):
    gw = start_gateway()
    # A slow stream started on generation 1: 8 events 150 ms apart.
    result = {}

    def stream():
        result["r"] = post(gw.port, CHAT, chat_body(stream=True),
                           {"x-fake-inter-event-delay-ms": "150", "x-fake-tokens": "5"}, deadline=15)
    t = threading.Thread(target=stream)
    t.start()
    time.sleep(0.3)
    # A keep-alive client connection opened before the reload.
    keep = socket.create_connection(("127.0.0.1", gw.port))
    assert post(gw.port, CHAT, chat_body(), sock=keep).status == 200
    # Generation 2: a new route to a second provider.
    rewrite(gw, fake, [{"path": CHAT, "provider": "local"}, {"path": "/v2/chat/completions", "provider": "second",
                                                           "upstream_path": "/v1/chat/completions"}])
    assert post(gw.port, "/v2/chat/completions", chat_body(), {}).status == 404      # not yet
    gw.proc.send_signal(signal.SIGHUP)
    assert "generation 2 loaded" in gw.wait_log("generation 2 loaded", timeout=5)
    r = post(gw.port, "/v2/chat/completions", chat_body(), {})
    assert r.status == 200, r.body
    assert r.headers["x-portcullis-provider"] == "second"
    # The old keep-alive connection was not dropped and now serves generation 2 too.
    r2 = post(gw.port, "/v2/chat/completions", chat_body(), sock=keep)
    assert r2.status == 200
    keep.close()
    t.join(15)
    s = result["r"]
    assert s.status == 200 and s.complete
    events = sse_data(s.body)
    assert events[-1] == (None, "[DONE]")                      # the stream finished whole
    assert metric(gw.port, "portcullis_config_generation") == 2.0


def test_invalid_reload_keeps_the_old_generation_and_names_file_line_column(start_gateway, fake):
    gw = start_gateway()
    text = edit_and_reload(gw, "header_timeout: 2s", "header_timeout: soon", "reload failed")
    assert "reload failed, keeping configuration generation 1" in text
    assert f"{gw.config_path}:" in text and "server.header_timeout" in text
    assert post(gw.port, CHAT, chat_body(), {}).status == 200
    lines = metric(gw.port, "portcullis_config_reloads_total")
    assert 'portcullis_config_reloads_total{result="failed"} 1' in lines
    assert gw.proc.poll() is None


def test_reload_refuses_a_listen_or_workers_change(start_gateway, fake):
    gw = start_gateway()
    text = edit_and_reload(gw, "workers: 2", "workers: 1", "reload failed")
    assert "cannot change on reload" in text
    assert post(gw.port, CHAT, chat_body(), {}).status == 200


def test_reload_changes_limits_and_keeps_buckets(start_gateway, fake):
    gw = start_gateway(extra_yaml="limits: { default_tier: t, tiers: { t: { requests_per_minute: 100 } } }\n")
    assert post(gw.port, CHAT, chat_body(), {}).status == 200
    edit_and_reload(gw, "requests_per_minute: 100", "requests_per_minute: 2", "generation 2 loaded")
    statuses = [post(gw.port, CHAT, chat_body(), {}).status for _ in range(4)]
    assert 429 in statuses, statuses


class NotifySocket:
    """A unix datagram socket standing in for systemd's $NOTIFY_SOCKET."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.1)
        self.messages = []

    def drain(self):
        # Bounded: with the watchdog pinging about as often as the receive timeout, an
        # unbounded loop could keep receiving and never return.
        deadline = time.time() + 0.2
        while time.time() < deadline:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except (socket.timeout, BlockingIOError):
                break
        return self.messages

    def wait(self, needle, timeout=5.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if any(needle in m for m in self.drain()):
                return True
        return False


def test_sd_notify_ready_reload_watchdog_stopping(start_gateway, tmp_path):
    path = str(tmp_path / "notify.sock")
    n = NotifySocket(path)
    gw = start_gateway(env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})
    assert n.wait("READY=1")
    ready = next(m for m in n.messages if "READY=1" in m)
    assert "STATUS=serving on 127.0.0.1:" in ready and "config generation 1" in ready
    assert n.wait("WATCHDOG=1")
    before = sum("WATCHDOG=1" in m for m in n.drain())
    time.sleep(0.6)                                             # pinged every 100 ms
    assert sum("WATCHDOG=1" in m for m in n.drain()) >= before + 3
    n.messages.clear()
    gw.proc.send_signal(signal.SIGHUP)
    assert n.wait("READY=1")
    reloading = [m for m in n.messages if "RELOADING=1" in m]
    assert reloading and "MONOTONIC_USEC=" in reloading[0]
    assert n.messages.index(reloading[0]) < max(i for i, m in enumerate(n.messages) if "READY=1" in m)
    gw.proc.send_signal(signal.SIGTERM)
    assert n.wait("STOPPING=1")
    gw.proc.wait(timeout=10)


def test_provider_key_from_the_credentials_directory(start_gateway, fake, tmp_path):
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "openai-key").write_text("sk-from-credential\n")
    providers = {"local": {"base_url": f"http://127.0.0.1:{fake.port}", "kind": "openai", "api_key_file": "openai-key"}}
    gw = start_gateway(providers=providers, env={"CREDENTIALS_DIRECTORY": str(creds)})
    assert post(gw.port, CHAT, chat_body(), {}).status == 200
    seen = dict(fake.last_request()["headers"])
    assert seen["authorization"] == "Bearer sk-from-credential"


def test_unit_file_verifies_and_is_type_notify(tmp_path):
    import shutil
    import subprocess
    from conftest import BIN, ROOT
    unit = open(os.path.join(ROOT, "Config", "portcullis.service")).read()
    assert "Type=notify" in unit and "ExecReload=/bin/kill -HUP $MAINPID" in unit and "WatchdogSec=" in unit
    if shutil.which("systemd-analyze") is None:
        return                                                  # no systemd here: the text checks above stand
    p = tmp_path / "portcullis.service"
    p.write_text(unit.replace("/usr/local/bin/portcullis", os.path.join(BIN, "portcullis"))
                 .replace("/etc/portcullis/portcullis.yaml", os.path.join(ROOT, "Config", "portcullis.example.yaml")))
    r = subprocess.run(["systemd-analyze", "verify", str(p)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_text_access_log_and_prometheus_exposition(start_gateway, fake):
    gw = start_gateway(extra_yaml="")
    edit_and_reload(gw, "  access: true", "  access: true\n  format: text", "generation 2 loaded")
    assert post(gw.port, CHAT, chat_body(), {}).status == 200
    log = gw.wait_log(" outcome=ok ")
    line = next(l for l in log.splitlines() if l.startswith("time=") and " outcome=ok " in l)
    assert " status=200 " in line and " provider=local " in line and " route=/v1/chat/completions " in line
    # Every sample line of the exposition is `name{labels} value` under a TYPE line of its family.
    body = metrics_text(gw.port)
    families = set()
    for l in body.splitlines():
        if l.startswith("# TYPE "):
            families.add(l.split()[2])
        elif l and not l.startswith("#"):
            name = l.split("{")[0].split(" ")[0]
            base = name
            for suffix in ("_bucket", "_sum", "_count"):
                if name.endswith(suffix) and name[: -len(suffix)] in families:
                    base = name[: -len(suffix)]
            assert base in families, l
            float(l.rsplit(" ", 1)[1])
    promtool = __import__("shutil").which("promtool")
    if promtool:
        import subprocess
        r = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr


def test_a_stalled_stdout_does_not_stall_the_worker(tmp_path, fake):
    """stdout is a pipe nobody reads: requests keep being answered; lines beyond the buffer are dropped and counted."""
    import subprocess
    from conftest import BIN, free_port, wait_port
    port = free_port()
    cfg = render_config(port, {"local": {"base_url": f"http://127.0.0.1:{fake.port}"}},
                        [{"path": CHAT, "provider": "local"}]).replace("  access: true", "  access: true\n  buffer_bytes: 4096")
    (tmp_path / "c.yaml").write_text(cfg)
    r, w = os.pipe()                                     # never read: fills at 64 KiB
    proc = subprocess.Popen([os.path.join(BIN, "portcullis"), "--config", str(tmp_path / "c.yaml")],
                            stdout=w, stderr=subprocess.DEVNULL)
    os.close(w)
    try:
        wait_port(port, proc)
        s = socket.create_connection(("127.0.0.1", port))
        t0 = time.time()
        for _ in range(600):                             # ~600 × 500 B of log lines: far over 64 KiB + 4 KiB
            assert post(port, CHAT, chat_body(), sock=s).status == 200
        s.close()
        assert time.time() - t0 < 20
        assert metric(port, "portcullis_access_log_dropped_total") > 0
    finally:
        proc.kill()
        proc.wait()
        os.close(r)


def test_reload_closes_idle_pooled_connections_of_a_removed_provider(start_gateway, fake):
    providers = {"local": {"base_url": f"http://127.0.0.1:{fake.port}"},
                 "other": {"base_url": f"http://localhost:{fake.port}"}}     # another endpoint, same server
    routes = [{"path": CHAT, "provider": "local"},
              {"path": "/other/chat/completions", "provider": "other", "upstream_path": CHAT}]
    gw = start_gateway(providers=providers, routes=routes, workers=1)
    results = []
    threads = [threading.Thread(target=lambda: results.append(
        post(gw.port, "/other/chat/completions", chat_body(), {"x-fake-first-byte-delay-ms": "200"}).status)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 4
    pid = gw.proc.pid
    with_pool, _ = settled_fd_count(pid, timeout=0.5)        # the clients' connections closed
    with open(gw.config_path, "w") as f:
        f.write(render_config(gw.port, {"local": providers["local"]}, [routes[0]]).replace("workers: 2", "workers: 1"))
    gw.proc.send_signal(signal.SIGHUP)
    gw.wait_log("generation 2 loaded", timeout=5)
    now, targets = settled_fd_count(pid, at_most=with_pool - 4)
    assert now <= with_pool - 4, f"the removed provider's idle connections stay open: {with_pool} fds before, now {targets}"
    assert post(gw.port, "/other/chat/completions", chat_body(), {}).status == 404
    assert post(gw.port, CHAT, chat_body(), {}).status == 200
