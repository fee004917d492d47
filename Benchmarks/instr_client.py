"""Benchmarks/instructions.sh: N sequential keep-alive POSTs, each answer checked (a fixed amount of work for callgrind);
`INSTR_CONNS` connections taking turns (default 1)."""
import os, socket, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import next_response  # noqa: E402
port, n = int(sys.argv[1]), int(sys.argv[2])
auth = b"Authorization: Bearer %s\r\n" % sys.argv[3].encode() if len(sys.argv) > 3 else b""
body = b'{"model":"chat-default","messages":[{"role":"user","content":"Open the gate."}]}'
req = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n" % (auth, len(body))) + body
if os.environ.get("INSTR_CLIENT") == "sdk":  # the head the OpenAI Python SDK (3.57, httpx) sends, as captured
    req = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nAccept-Encoding: gzip, deflate\r\n"
           b"Connection: keep-alive\r\n%saccept: application/json\r\ncontent-type: application/json\r\n"
           b"user-agent: OpenAI/Python 3.57.0\r\nx-stainless-lang: python\r\nx-stainless-package-version: 3.57.0\r\n"
           b"x-stainless-os: Linux\r\nx-stainless-arch: x64\r\nx-stainless-runtime: CPython\r\n"
           b"x-stainless-runtime-version: 3.11.7\r\nx-stainless-async: false\r\nx-stainless-retry-count: 0\r\n"
           b"x-stainless-read-timeout: 600\r\nContent-Length: %d\r\n\r\n" % (auth.replace(b"Authorization", b"authorization"), len(body))) + body
# INSTR_CONNS: the requests take turns over that many keep-alive connections (one at a time).
conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(int(os.environ.get("INSTR_CONNS", "1")))]
bufs = [b""] * len(conns)
for i in range(n):
    k = i % len(conns)
    conns[k].sendall(req)
    head, bufs[k] = next_response(conns[k], bufs[k])
    assert head.startswith(b"http/1.1 200"), head[:100]
for s in conns:
    s.close()
