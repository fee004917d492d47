"""Many concurrent slow streams through one proxy worker: RSS per open stream, CPU, and whether
every event arrived within a second. Portcullis and nginx, same machine, same run.

Each stream: the fake provider sends an SSE event every --interval ms, --events of them. A client
process holds every stream open at once (selectors/epoll) and timestamps each event; an event is
"late" when it arrives more than 1 s after it was due (the previous event's arrival + interval).

Usage: python3 Benchmarks/streams.py --bin .build/release [--streams 9000] [--events 20] [--interval 500]
Writes Benchmarks/STREAMS.md.
"""
import argparse
import json
import os
import resource
import selectors
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench import (cpu_seconds, free_port, nginx_worker, recv_nowait, rss_kb, start_nginx,  # noqa: E402
                   start_portcullis, stop_all, wait_port)


def run_streams(port, pid, n, events, interval_ms):
    body = json.dumps({"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}).encode()
    req = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           f"x-fake-tokens: {events}\r\nx-fake-inter-event-delay-ms: {interval_ms}\r\nConnection: close\r\n"
           f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    sel = selectors.DefaultSelector()
    rss_before = rss_kb(pid)
    cpu0 = cpu_seconds(pid)
    state = {}
    opened_at = time.perf_counter()
    for i in range(n):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        state[s] = {"sent": False, "last": None, "late": 0, "events": 0, "max_gap": 0.0, "done": False}
        sel.register(s, selectors.EVENT_WRITE)
        if i % 500 == 499:
            pump(sel, state, req, interval_ms, 0.05)
    open_time = time.perf_counter() - opened_at
    rss_peak, t_mid = 0, time.perf_counter() + (events * interval_ms / 1000) / 2
    deadline = time.perf_counter() + events * interval_ms / 1000 + 30
    while any(not st["done"] for st in state.values()) and time.perf_counter() < deadline:
        pump(sel, state, req, interval_ms, 0.2)
        if time.perf_counter() >= t_mid and rss_peak == 0:
            rss_peak = rss_kb(pid)
    cpu = cpu_seconds(pid) - cpu0
    wall = time.perf_counter() - opened_at
    for s in list(state):
        try:
            sel.unregister(s)
        except (KeyError, ValueError):
            pass
        s.close()
    gaps = sorted(st["max_gap"] for st in state.values())
    total_events = sum(st["events"] for st in state.values())
    late = sum(st["late"] for st in state.values())
    done = sum(st["done"] for st in state.values())
    return {"n": n, "open_s": open_time, "rss_before": rss_before, "rss_peak": rss_peak,
            "per_stream_kib": (rss_peak - rss_before) / n, "cpu_pct": cpu / wall * 100, "done": done,
            "events": total_events, "late": late, "gap_p50": gaps[len(gaps) // 2], "gap_max": gaps[-1]}


def pump(sel, state, req, interval_ms, timeout):
    for key, mask in sel.select(timeout):
        s, st = key.fileobj, state[key.fileobj]
        if mask & selectors.EVENT_WRITE and not st["sent"]:
            try:
                s.send(req)
            except OSError:
                st["done"] = True
                sel.unregister(s)
                continue
            st["sent"] = True
            sel.modify(s, selectors.EVENT_READ)
            continue
        data = recv_nowait(s)
        if data is None:
            continue
        now = time.perf_counter()
        if not data:
            st["done"] = True
            sel.unregister(s)
            continue
        k = data.count(b"data:")
        if k:
            if st["last"] is not None:
                gap = now - st["last"]
                st["max_gap"] = max(st["max_gap"], gap)
                if gap > interval_ms / 1000 + 1.0:
                    st["late"] += 1
            st["last"] = now
            st["events"] += k


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--streams", type=int, default=9000)
    ap.add_argument("--events", type=int, default=20)
    ap.add_argument("--interval", type=int, default=500)
    ap.add_argument("--out", default=os.path.join(HERE, "STREAMS.md"))
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    tmp = tempfile.mkdtemp(prefix="portcullis-streams-")
    fake_port, gw_port, ngx_port = free_port(), free_port(), free_port()
    procs = [subprocess.Popen([os.path.join(a.bin, "FakeProvider"), "--listen", f"127.0.0.1:{fake_port}", "--workers", "2"],
                              stderr=subprocess.DEVNULL)]
    cfg = os.path.join(tmp, "p.yaml")
    with open(cfg, "w") as f:
        f.write(f"""server: {{ listen: ["127.0.0.1:{gw_port}"], workers: 1, max_connections: 20000 }}
providers: {{ fake: {{ base_url: "http://127.0.0.1:{fake_port}", max_idle_connections: 256 }} }}
routes: [ {{ path: /v1/chat/completions, provider: fake, timeouts: {{ idle: 60s, total: 600s }} }} ]
log: {{ level: warn, access: false }}
""")
    gw = start_portcullis(a.bin, cfg)
    procs.append(gw)
    ngx = start_nginx(tmp, ngx_port, fake_port, nofile=hard)
    procs.append(ngx)
    results = {}
    try:
        for p in (fake_port, gw_port, ngx_port):
            wait_port(p)
        time.sleep(0.3)
        ngx_worker = nginx_worker(ngx)
        for name, port, pid in (("Portcullis", gw_port, gw.pid), ("nginx worker", ngx_port, ngx_worker)):
            results[name] = run_streams(port, pid, a.streams, a.events, a.interval)
            print(name, results[name], flush=True)
            time.sleep(3)
    finally:
        stop_all(procs)
    lines = [f"# {a.streams} concurrent slow streams", "",
             f"`python3 Benchmarks/streams.py --bin .build/release --streams {a.streams} --events {a.events} --interval {a.interval}` "
             f"on {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores; one worker per proxy, the fake provider (2 workers) sends an "
             f"event every {a.interval} ms, {a.events} per stream; one client process holds every stream. An event is late when it "
             "arrives more than 1 s after it was due.", "",
             "| proxy | RSS before | RSS, all streams open | per stream | CPU (% of a core) | streams completed | events | late | max gap p50 | max gap worst |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['rss_before'] / 1024:.1f} MiB | {r['rss_peak'] / 1024:.1f} MiB | {r['per_stream_kib']:.1f} KiB | "
                     f"{r['cpu_pct']:.0f} | {r['done']}/{r['n']} | {r['events']} | {r['late']} | {r['gap_p50']:.2f} s | {r['gap_max']:.2f} s |")
    lines.append("")
    text = "\n".join(lines)
    print(text)
    with open(a.out, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
