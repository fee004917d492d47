"""Wallet protection end to end (issue 8, first part): the memory store, a real redis-server,
two gateways sharing one Redis, and Redis outages under both failure policies."""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid

import pytest

from conftest import free_port
from httpio import post

CHAT = "/v1/chat/completions"


def body():
    return json.dumps({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}).encode()


class Redis:
    def __init__(self, port, proc=None):
        self.port, self.proc = port, proc

    def cli(self, *args):
        return subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True, timeout=5).stdout


def start_redis():
    port = free_port()
    d = tempfile.mkdtemp(prefix="pc-redis-")
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", d], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            break
        except OSError:
            time.sleep(0.05)
    return Redis(port, proc), d


@pytest.fixture
def own_redis():
    """A redis-server of this test's own (it may be stopped and restarted)."""
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    r, d = start_redis()
    yield r
    if r.proc:
        r.proc.send_signal(signal.SIGCONT)
        r.proc.kill()
        r.proc.wait()
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def shared_redis():
    """The suite's Redis (PORTCULLIS_TEST_REDIS, started by Scripts/test.sh), else one of our own."""
    addr = os.environ.get("PORTCULLIS_TEST_REDIS")
    if addr:
        yield Redis(int(addr.rsplit(":", 1)[1]))
        return
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    r, d = start_redis()
    yield r
    r.proc.kill()
    r.proc.wait()
    shutil.rmtree(d, ignore_errors=True)


def limits_yaml(rpm=3, redis_port=None, policy="fail_open", prefix=None, timeout="50ms"):
    y = f"limits:\n  default_tier: free\n  tiers:\n    free: {{ requests_per_minute: {rpm}, tokens_per_day: 100000 }}\n"
    if redis_port:
        y += (f"redis: {{ url: \"redis://127.0.0.1:{redis_port}/0\", timeout: {timeout}, on_failure: {policy},"
              f" key_prefix: {prefix or 'pc-' + uuid.uuid4().hex[:8]} }}\n")
    return y


def statuses(gw, n, headers=None):
    return [post(gw.port, CHAT, body(), headers).status for _ in range(n)]


def test_memory_store_exact_limit_with_headers(start_gateway):
    gw = start_gateway(extra_yaml=limits_yaml(rpm=3))
    rs = [post(gw.port, CHAT, body()) for _ in range(4)]
    assert [r.status for r in rs] == [200, 200, 200, 429]
    assert rs[0].headers["x-ratelimit-limit-requests"] == "3"
    assert rs[0].headers["x-ratelimit-remaining-requests"] == "2"
    assert rs[2].headers["x-ratelimit-remaining-requests"] == "0"
    assert rs[0].headers["x-ratelimit-limit-tokens"] == "100000"
    assert "x-ratelimit-reset-requests" in rs[0].headers
    err = json.loads(rs[3].body)["error"]
    assert err["code"] == "rate_limit_exceeded" and err["type"] == "rate_limit_error"
    assert int(rs[3].headers["retry-after"]) >= 1
    assert "outcome=rate_limited:tenant_(free_tier)_requests_per_minute" in gw.wait_log("rate_limited")


def test_redis_store_exact_limit(start_gateway, shared_redis, fake):
    gw = start_gateway(extra_yaml=limits_yaml(rpm=5, redis_port=shared_redis.port))
    before = fake.stats()["chat_requests"]
    assert statuses(gw, 7) == [200] * 5 + [429, 429]
    assert fake.stats()["chat_requests"] - before == 5, "a refused request reached the provider"


def test_two_gateways_share_one_redis_limit(start_gateway, shared_redis):
    prefix = "pc-shared-" + uuid.uuid4().hex[:8]
    a = start_gateway(extra_yaml=limits_yaml(rpm=6, redis_port=shared_redis.port, prefix=prefix))
    b = start_gateway(extra_yaml=limits_yaml(rpm=6, redis_port=shared_redis.port, prefix=prefix))
    got = []
    for i in range(10):
        got.append(post((a if i % 2 == 0 else b).port, CHAT, body()).status)
    assert got.count(200) == 6 and got.count(429) == 4, got


def test_script_reloaded_after_redis_forgets_it(start_gateway, shared_redis):
    gw = start_gateway(extra_yaml=limits_yaml(rpm=100, redis_port=shared_redis.port))
    assert statuses(gw, 3) == [200] * 3
    shared_redis.cli("SCRIPT", "FLUSH")
    assert statuses(gw, 3) == [200] * 3   # NOSCRIPT → EVAL, transparently


def timed_post(gw):
    t = time.time()
    r = post(gw.port, CHAT, body(), deadline=5)
    return r.status, time.time() - t


def test_redis_paused_fail_open_serves_from_memory_then_recovers(start_gateway, own_redis):
    gw = start_gateway(extra_yaml=limits_yaml(rpm=1000, redis_port=own_redis.port, policy="fail_open"))
    assert statuses(gw, 2) == [200, 200]
    own_redis.proc.send_signal(signal.SIGSTOP)
    try:
        results = [timed_post(gw) for _ in range(8)]
        assert all(s == 200 for s, _ in results), results
        assert max(d for _, d in results) < 1.0, f"a request waited on a paused Redis: {results}"
        assert "portcullis_limiter_degraded 1" in metrics(gw)
    finally:
        own_redis.proc.send_signal(signal.SIGCONT)
    deadline = time.time() + 5
    while time.time() < deadline and "portcullis_limiter_degraded 1" in metrics(gw):
        post(gw.port, CHAT, body())
        time.sleep(0.2)
    assert "portcullis_limiter_degraded 0" in metrics(gw), "Redis was not used again after it came back"
    assert "redis unavailable" in gw.log() and "answers again" in gw.log()


def test_redis_paused_fail_closed_answers_503_and_not_ready(start_gateway, own_redis):
    gw = start_gateway(extra_yaml=limits_yaml(rpm=1000, redis_port=own_redis.port, policy="fail_closed"))
    assert statuses(gw, 1) == [200]
    own_redis.proc.send_signal(signal.SIGSTOP)
    try:
        results = [timed_post(gw) for _ in range(5)]
        assert all(s == 503 for s, _ in results), results
        assert max(d for _, d in results) < 1.0, results
        import urllib.error, urllib.request
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"{gw.base}/readyz", timeout=5)
        assert e.value.code == 503
    finally:
        own_redis.proc.send_signal(signal.SIGCONT)
    deadline = time.time() + 5
    ok = []
    while time.time() < deadline:
        ok.append(post(gw.port, CHAT, body()).status)
        if ok[-1] == 200:
            break
        time.sleep(0.2)
    assert ok[-1] == 200, f"no recovery without a restart: {ok}"


def test_redis_restarted_is_used_again(start_gateway, own_redis):
    gw = start_gateway(extra_yaml=limits_yaml(rpm=1000, redis_port=own_redis.port, policy="fail_closed"))
    assert statuses(gw, 1) == [200]
    port = own_redis.port
    own_redis.proc.kill()
    own_redis.proc.wait()
    assert statuses(gw, 2) == [503, 503]
    d = tempfile.mkdtemp(prefix="pc-redis-")
    own_redis.proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", d],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    got = None
    while time.time() < deadline:
        got = post(gw.port, CHAT, body()).status
        if got == 200:
            break
        time.sleep(0.2)
    assert got == 200


def metrics(gw):
    import urllib.request
    with urllib.request.urlopen(f"{gw.base}/metrics", timeout=5) as r:
        return r.read().decode()
