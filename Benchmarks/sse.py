"""An SSE load tool that reads event by event and timestamps each.

The fake provider, asked with `x-fake-stamp: 1`, starts every event with a comment line
`: sent_ns=N` (CLOCK_MONOTONIC when it queued the event). This tool keeps `concurrency` streams
open at once (one process, epoll via selectors), and for every event computes its one-way delay:
arrival (CLOCK_MONOTONIC, `time.monotonic_ns()`) minus `sent_ns`, and for every stream the time
from sending the request to its first event. Run the same load directly against the provider and
through a proxy: the difference of the two distributions is what the proxy adds (the client's
own overhead is in both).

Used by bench.py; alone: python3 Benchmarks/sse.py --port P [--concurrency 32] [--events 200] [--interval 5]
"""
import argparse
import json
import selectors
import socket
import time

from bench import percentile, recv_nowait

STAMP = b": sent_ns="


def run(port, concurrency=32, events=200, interval_ms=5, path="/v1/chat/completions", token=None, model="chat-default",
        timeout=60):
    """Returns (per-event delays in ms, time-to-first-event per stream in ms, streams that failed)."""
    body = json.dumps({"model": model, "stream": True, "messages": [{"role": "user", "content": "Open the gate."}]}).encode()
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    req = (f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n{auth}"
           f"x-fake-stamp: 1\r\nx-fake-tokens: {events}\r\nx-fake-inter-event-delay-ms: {interval_ms}\r\n"
           f"Connection: close\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    sel = selectors.DefaultSelector()
    delays, firsts, failed = [], [], 0
    # Connect every stream first, then start one request every `stagger_ms` from inside the read
    # loop, so a stream's first event is timed while the client is reading, not while it is
    # still opening the others.
    waiting = []
    for _ in range(concurrency):
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        waiting.append(s)
    stagger_ms = max(1.0, interval_ms / 2)
    next_start = time.monotonic()
    open_streams = concurrency
    deadline = time.monotonic() + timeout + concurrency * stagger_ms / 1000
    while open_streams and time.monotonic() < deadline:
        if waiting and time.monotonic() >= next_start:
            s = waiting.pop()
            s.sendall(req)
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ, {"buf": b"", "sent": time.monotonic_ns(), "first": None})
            next_start += stagger_ms / 1000
        wait = max(0.0, next_start - time.monotonic()) if waiting else 1
        for key, _ in sel.select(timeout=wait):
            s, st = key.fileobj, key.data
            data = recv_nowait(s)
            if data is None:
                continue
            now = time.monotonic_ns()
            if not data:
                sel.unregister(s)
                s.close()
                open_streams -= 1
                if st["first"] is None:
                    failed += 1
                continue
            buf = st["buf"] + data
            # Every complete event that carries a stamp: its delay is now − sent_ns.
            pos = 0
            while True:
                i = buf.find(STAMP, pos)
                if i < 0:
                    break
                end = buf.find(b"\n\n", i)
                if end < 0:
                    break
                nl = buf.find(b"\n", i)
                sent = int(buf[i + len(STAMP):nl])
                delays.append((now - sent) / 1e6)
                if st["first"] is None:
                    st["first"] = now
                    firsts.append((now - st["sent"]) / 1e6)
                pos = end + 2
            st["buf"] = buf[pos:] if pos else buf[-65536:]
    for key in list(sel.get_map().values()):
        key.fileobj.close()
        failed += 1
    for s in waiting:
        s.close()
        failed += 1
    return delays, firsts, failed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--events", type=int, default=200)
    ap.add_argument("--interval", type=int, default=5)
    ap.add_argument("--token")
    a = ap.parse_args()
    d, f, failed = run(a.port, a.concurrency, a.events, a.interval, token=a.token)
    print(f"events {len(d)}  delay p50 {percentile(d, .5):.3f} ms  p99 {percentile(d, .99):.3f} ms  p99.9 {percentile(d, .999):.3f} ms  "
          f"first event p50 {percentile(f, .5):.3f} ms  failed {failed}")


if __name__ == "__main__":
    main()
