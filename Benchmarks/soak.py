"""Soak: mixed streaming / non-streaming load with random client aborts, whole-config reloads and a
Redis restart, for N minutes, sampling the gateway's RSS, open fds and open streams every 10 s.
After the load stops, fds and streams must return to their baseline and RSS must stop growing.

Usage: python3 Benchmarks/soak.py --bin .build/release --minutes 30 [--clients 16]
Writes Benchmarks/SOAK.md (table and verdict) and Benchmarks/soak.png (the curves).
Exit status 1 when a check fails.
"""
import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench import free_port, read_to_eof, rss_kb, start_portcullis, wait_port  # noqa: E402


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def metric(port, name):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = read_to_eof(s)
        s.close()
        for line in data.decode(errors="replace").splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
    except OSError:
        pass
    return -1


CONFIG = """server: {{ listen: ["127.0.0.1:{port}"], workers: 2, drain_timeout: 5s }}
providers:
  fake: {{ base_url: "http://127.0.0.1:{fake}", max_idle_connections: 8, idle_connection_timeout: 10s }}
  backup: {{ base_url: "http://127.0.0.1:{fake}/_x/tokens=3", max_idle_connections: 8, idle_connection_timeout: 10s }}
models:
  chat-default:
    tiers: {{ free: [{{ target: fake/gpt-4o-mini, weight: {w1} }}, {{ target: backup/gpt-4o, weight: {w2} }}] }}
    default_tier: free
routes:
  - {{ path: /v1/chat/completions, timeouts: {{ connect: 2s, first_byte: 10s, idle: 5s, total: 60s }} }}
limits:
  default_tier: free
  tiers: {{ free: {{ requests_per_minute: 100000000, tokens_per_minute: 1000000000, max_concurrent_streams: 10000 }} }}
redis: {{ url: "redis://127.0.0.1:{redis}", timeout: 50ms, on_failure: fail_open }}
log: {{ level: warn, access: true }}
"""


class Load:
    def __init__(self, port, clients):
        self.port = port
        self.stop = threading.Event()
        self.counts = {"ok": 0, "aborted": 0, "error": 0}
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.client, args=(i,), daemon=True) for i in range(clients)]

    def count(self, k):
        with self.lock:
            self.counts[k] += 1

    def client(self, i):
        rnd = random.Random(i)
        while not self.stop.is_set():
            stream = rnd.random() < 0.5
            abort = rnd.random() < 0.15
            tokens = rnd.choice([5, 50, 400])
            body = json.dumps({"model": "chat-default", "stream": stream,
                               "messages": [{"role": "user", "content": "soak"}]}).encode()
            head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                    f"x-fake-tokens: {tokens}\r\nx-fake-inter-event-delay-ms: {rnd.choice([0, 0, 5])}\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n").encode()
            try:
                s = socket.create_connection(("127.0.0.1", self.port), timeout=15)
                s.sendall(head + body)
                if abort:
                    time.sleep(rnd.random() * 0.05)
                    s.recv(rnd.choice([1, 100, 4096]))
                    s.close()
                    self.count("aborted")
                    continue
                data = read_to_eof(s)
                s.close()
                self.count("ok" if data.startswith(b"HTTP/1.1 200") else "error")
            except OSError:
                self.count("error")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--out", default=HERE)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="portcullis-soak-")
    fake_port, gw_port, redis_port = free_port(), free_port(), free_port()
    procs = []
    fake = subprocess.Popen([os.path.join(a.bin, "FakeProvider"), "--listen", f"127.0.0.1:{fake_port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.append(fake)

    def start_redis():
        return subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                                 "--appendonly", "no", "--dir", tmp], stdout=subprocess.DEVNULL)
    redis = start_redis()
    cfg = os.path.join(tmp, "portcullis.yaml")
    with open(cfg, "w") as f:
        f.write(CONFIG.format(port=gw_port, fake=fake_port, redis=redis_port, w1=90, w2=10))
    wait_port(fake_port)
    wait_port(redis_port)
    gw = start_portcullis(a.bin, cfg, stderr=open(os.path.join(tmp, "gw.err"), "w"))
    procs.append(gw)
    wait_port(gw_port)
    time.sleep(1)
    base = {"rss": rss_kb(gw.pid), "fds": fds(gw.pid), "streams": metric(gw_port, "portcullis_open_streams")}
    load = Load(gw_port, a.clients)
    for t in load.threads:
        t.start()
    samples = []
    start = time.time()
    end = start + a.minutes * 60
    next_reload = start + 60
    redis_restart = start + a.minutes * 60 / 3
    reloads = 0
    restarted = False
    while time.time() < end:
        time.sleep(10)
        now = time.time()
        if now >= next_reload:
            reloads += 1
            with open(cfg, "w") as f:
                w1 = 90 if reloads % 2 == 0 else 50
                f.write(CONFIG.format(port=gw_port, fake=fake_port, redis=redis_port, w1=w1, w2=100 - w1))
            gw.send_signal(signal.SIGHUP)
            next_reload = now + 60
        if not restarted and now >= redis_restart:
            redis.kill()
            redis.wait()
            time.sleep(3)
            redis = start_redis()
            restarted = True
        with load.lock:
            done = dict(load.counts)
        samples.append({"t": round(now - start), "rss": rss_kb(gw.pid), "fds": fds(gw.pid),
                        "streams": metric(gw_port, "portcullis_open_streams"), **done})
        print(samples[-1], flush=True)
        if gw.poll() is not None:
            break
    load.stop.set()
    for t in load.threads:
        t.join(20)
    time.sleep(15)                                   # streams end, idle connections time out
    after = [{"rss": rss_kb(gw.pid), "fds": fds(gw.pid), "streams": metric(gw_port, "portcullis_open_streams")}]
    time.sleep(20)
    after.append({"rss": rss_kb(gw.pid), "fds": fds(gw.pid), "streams": metric(gw_port, "portcullis_open_streams")})
    alive = gw.poll() is None
    for p in procs + [redis]:
        p.kill()
        p.wait()

    # Verdict.
    half = samples[len(samples) // 2]["rss"] if samples else 0
    last = samples[-1]["rss"] if samples else 0
    checks = {
        "gateway alive at the end": alive,
        # Idle pooled upstream connections time out after 10 s; each worker keeps its Redis connection.
        "fds back to baseline (+1 Redis connection per worker)": after[-1]["fds"] <= base["fds"] + 2,
        "open streams back to 0": after[-1]["streams"] == 0,
        "RSS stops growing after the load (±1 MiB over 20 s)": abs(after[1]["rss"] - after[0]["rss"]) <= 1024,
        "RSS second half growth < 10%": half == 0 or (last - half) / half < 0.10,
    }
    write_results(a, samples, base, after, checks, reloads, restarted)
    print(json.dumps(checks, indent=1))
    sys.exit(0 if all(checks.values()) else 1)


def write_results(a, samples, base, after, checks, reloads, restarted):
    md = os.path.join(a.out, "SOAK.md")
    with open(md, "w") as f:
        f.write(f"# Soak\n\n`python3 Benchmarks/soak.py --bin .build/release --minutes {a.minutes:g} --clients {a.clients}` "
                f"on {time.strftime('%Y-%m-%d')}, 2 cores (other work on the machine: see the note).\n\n")
        f.write(f"Load: {a.clients} clients, half streaming, 15% aborted mid-response, tokens 5/50/400 per answer, "
                f"an alias split over two targets, limits in Redis (`fail_open`), access log on; "
                f"{reloads} whole-config reloads (weights changed each minute), Redis "
                f"{'killed and restarted once' if restarted else 'not restarted'}.\n\n")
        f.write(f"Baseline before load: RSS {base['rss'] / 1024:.1f} MiB, {base['fds']} fds, {base['streams']:g} streams.\n\n")
        f.write("| t s | RSS MiB | fds | open streams | ok | aborted | errors |\n|---|---|---|---|---|---|---|\n")
        for s in samples:
            f.write(f"| {s['t']} | {s['rss'] / 1024:.1f} | {s['fds']} | {s['streams']:g} | {s['ok']} | {s['aborted']} | {s['error']} |\n")
        f.write("\nAfter the load stopped (+15 s, +35 s): " + ", ".join(
            f"RSS {x['rss'] / 1024:.1f} MiB, {x['fds']} fds, {x['streams']:g} streams" for x in after) + "\n\n")
        for k, v in checks.items():
            f.write(f"- {'✔' if v else '✘'} {k}\n")
        f.write("\n![RSS, fds and streams over time](soak.png)\n")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no PNG", file=sys.stderr)
        return
    t = [s["t"] / 60 for s in samples]
    fig, ax = plt.subplots(3, 1, figsize=(8, 7), sharex=True)
    ax[0].plot(t, [s["rss"] / 1024 for s in samples]); ax[0].set_ylabel("RSS MiB")
    ax[1].plot(t, [s["fds"] for s in samples]); ax[1].set_ylabel("open fds")
    ax[2].plot(t, [s["streams"] for s in samples]); ax[2].set_ylabel("open streams"); ax[2].set_xlabel("minutes")
    for x in ax:
        x.axhline(0, color="grey", linewidth=0.5)
    ax[0].set_title("Portcullis soak: mixed load, aborts, reloads, a Redis restart")
    fig.tight_layout()
    fig.savefig(os.path.join(a.out, "soak.png"), dpi=90)


if __name__ == "__main__":
    main()
