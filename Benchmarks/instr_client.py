"""Benchmarks/instructions.sh: N sequential keep-alive POSTs, each answer checked (a fixed amount of work for callgrind)."""
import os, socket, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import next_response  # noqa: E402
port, n = int(sys.argv[1]), int(sys.argv[2])
auth = b"Authorization: Bearer %s\r\n" % sys.argv[3].encode() if len(sys.argv) > 3 else b""
body = b'{"model":"chat-default","messages":[{"role":"user","content":"Open the gate."}]}'
req = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n" % (auth, len(body))) + body
s = socket.create_connection(("127.0.0.1", port))
buf = b""
for i in range(n):
    s.sendall(req)
    head, buf = next_response(s, buf)
    assert head.startswith(b"http/1.1 200"), head[:100]
s.close()
