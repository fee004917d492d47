"""Request bodies of the sizes agents send: what each costs Portcullis's plain route (the body is
only copied), its alias route (the body is read once for its top-level members and `model` is
rewritten: the work the limiter's token estimate shares) and nginx as a plain proxy, per request,
in one run, interleaved rounds, medians. Writes Benchmarks/BODIES.md.

The bodies: the harness's 80-byte completion, a 4.3 KiB conversation, a 37 KiB tools-heavy agent
request (150 function definitions, ~4,200 short strings) and a 61 KiB request that is mostly one
long document. nginx keeps a body of up to 128 KiB in memory (`client_body_buffer_size`), as
Portcullis does, instead of writing it to a temporary file.

Usage: python3 Benchmarks/bodies.py --bin .build/release [--rounds 5] [--seconds 3]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench import (PLAIN_ROUTING, alias_routing, cpu_seconds, free_port, machine_line, middle_half,  # noqa: E402
                   nginx_worker, round_order, start_nginx, start_portcullis, stop_all, wait_port,
                   write_gateway_config, wrk)


def bodies():
    """(label, bytes) for each body, built the same way every run."""
    def msg(role, text):
        return {"role": role, "content": text}
    tool = lambda k: {"type": "function", "function": {
        "name": f"tool_{k}", "description": "Looks up a thing",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "enum": ["a", "b", "c", "d"]},
                                                        "unit": {"type": "string"}, "n": {"type": "integer"}},
                       "required": ["city", "unit"]}}}
    conversation = [msg("system", "You are a helpful assistant. " * 20)] + [
        msg("user" if i % 2 == 0 else "assistant", "Tell me about the gate, the wall and the moat, in some detail please. " * 4)
        for i in range(12)]
    document = "You answer from the documents below.\n" + "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 1100
    out = [("80-byte completion", {"model": "chat-default", "messages": [msg("user", "Open the gate.")]}),
           ("4.3 KiB conversation", {"model": "chat-default", "messages": conversation}),
           ("37 KiB tools-heavy agent request", {"model": "chat-default", "messages": [msg("user", "hi")],
                                                 "tools": [tool(k) for k in range(150)]}),
           ("61 KiB document", {"model": "chat-default", "messages": [msg("system", document), msg("user", "Summarise.")]})]
    return [(label, json.dumps(b, separators=(",", ":")).encode()) for label, b in out]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--conns", type=int, default=16)
    ap.add_argument("--out", default=os.path.join(HERE, "BODIES.md"))
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="portcullis-bodies-")
    procs = []
    try:
        fake_port = free_port()
        fake = subprocess.Popen([os.path.join(a.bin, "FakeProvider"), "--listen", f"127.0.0.1:{fake_port}", "--workers", "1"],
                                stderr=subprocess.DEVNULL)
        procs.append(fake)
        wait_port(fake_port)

        def gateway(routing):
            port = free_port()
            p = start_portcullis(a.bin, write_gateway_config(tmp, fake_port, f"gateway-{port}.yaml", port, routing))
            procs.append(p)
            wait_port(port)
            return port, p.pid
        plain = gateway(PLAIN_ROUTING)
        alias = gateway(alias_routing("s"))
        ngx_port = free_port()
        ngx = start_nginx(tmp, ngx_port, fake_port, body_buffer="128k")
        procs.append(ngx)
        wait_port(ngx_port)
        time.sleep(0.3)
        targets = {"plain": plain, "alias": alias, "nginx": (ngx_port, nginx_worker(ngx))}

        results = []
        for label, body in bodies():
            script = os.path.join(tmp, f"body-{len(body)}.lua")
            with open(os.path.join(tmp, f"body-{len(body)}.json"), "wb") as f:
                f.write(body)
            with open(script, "w") as f:
                f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                        f'local f = io.open("{tmp}/body-{len(body)}.json", "rb")\nwrk.body = f:read("*a")\nf:close()\n')
            for port, _ in targets.values():
                wrk(port, 1, a.conns, script=script)   # warm-up
            rounds = {k: [] for k in targets}
            for r in range(a.rounds):
                for name, (port, pid) in round_order(list(targets.items()), r):
                    c0 = cpu_seconds(pid)
                    res = wrk(port, a.seconds, a.conns, script=script)
                    res["cpu_us"] = (cpu_seconds(pid) - c0) / max(1, res["requests"]) * 1e6
                    rounds[name].append(res)
                    print(f"{label} round {r + 1} {name:6s} {res['rps']:8.0f} req/s cpu {res['cpu_us']:.1f} us/req "
                          f"non2xx {res['non2xx']} {res['errors']}", file=sys.stderr)
            med = {k: {m: statistics.median(x[m] for x in v) for m in ("rps", "cpu_us")} for k, v in rounds.items()}
            added = sorted(x["cpu_us"] - y["cpu_us"] for x, y in zip(rounds["alias"], rounds["plain"]))
            vs_ngx = {k: sorted(x["cpu_us"] / y["cpu_us"] for x, y in zip(rounds[k], rounds["nginx"])) for k in ("plain", "alias")}
            errors = sum(x["non2xx"] for v in rounds.values() for x in v)
            results.append((label, len(body), med, added, vs_ngx, errors))
    finally:
        stop_all(procs)

    def mh(xs):
        lo, hi = middle_half(xs)
        return f"{statistics.median(xs):.2f}× ({lo:.2f}–{hi:.2f}×)"
    lines = [
        "# Request bodies: the scan and the rewrite against a plain copy",
        "",
        f"`python3 Benchmarks/bodies.py --bin {a.bin} --rounds {a.rounds} --seconds {a.seconds}` on "
        f"{time.strftime('%Y-%m-%d')}. {machine_line()}",
        f"Each proxy with one worker in front of the fake provider; wrk -t1 -c{a.conns}, {a.seconds} s runs, "
        f"{a.rounds} interleaved rounds (every other round in reverse order), medians; CPU µs per request of the "
        "proxy process (`/proc`), steadier here than req/s. The plain route only copies the body; the alias "
        "route reads its top-level members (one pass over the whole body, so a repeated `model` is refused) "
        "and rewrites `model`. Ratios are medians of per-round ratios, the rounds' middle half in brackets.",
        "",
        "| body | bytes | req/s plain / alias / nginx | CPU µs a request: plain / alias / nginx | alias − plain | plain / nginx CPU | alias / nginx CPU |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, size, med, added, vs_ngx, errors in results:
        lines.append(f"| {label} | {size:,} | {med['plain']['rps']:.0f} / {med['alias']['rps']:.0f} / {med['nginx']['rps']:.0f} "
                     f"| {med['plain']['cpu_us']:.1f} / {med['alias']['cpu_us']:.1f} / {med['nginx']['cpu_us']:.1f} "
                     f"| {statistics.median(added):+.1f} µs | {mh(vs_ngx['plain'])} | {mh(vs_ngx['alias'])} |"
                     + (f" ({errors} non-2xx)" if errors else ""))
    lines += ["", "How the body scan works and what it costs alone: `Benchmarks/JSON-RESULTS.md`; what a large body "
              "means for one instance: `Docs/scale.md`.", ""]
    with open(a.out, "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
