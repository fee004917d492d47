"""TLS to a provider: a test CA signs a server certificate; the gateway trusts it via `ca_file`,
verifies the host name, and refuses the same server when it is not trusted."""
import json
import os
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import chat_body, free_port
from httpio import post

CHAT = "/v1/chat/completions"


def make_ca(d):
    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=Portcullis Test CA")
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf")
    return os.path.join(d, "ca.pem"), os.path.join(d, "server.pem"), os.path.join(d, "server.key")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        n = int(self.headers.get("content-length", "0"))
        sent = json.loads(self.rfile.read(n))     # the whole body, as JSON (a torn one fails here)
        body = json.dumps({"id": "chatcmpl-tls", "object": "chat.completion", "created": 1,
                           "model": sent.get("model", "m"),
                           "x_received": {"messages": len(sent.get("messages", [])),
                                          "characters": sum(len(m.get("content", "")) for m in sent.get("messages", []))},
                           "choices": [{"index": 0, "message": {"role": "assistant", "content": "over TLS"},
                                        "finish_reason": "stop"}],
                           "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


@pytest.fixture
def tls_server(tmp_path):
    ca, cert, key = make_ca(str(tmp_path))
    port = free_port()
    srv = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield port, ca
    srv.shutdown()


def test_tls_upstream_with_test_ca(start_gateway, tls_server):
    port, ca = tls_server
    gw = start_gateway(providers={"secure": {"base_url": f"https://localhost:{port}", "ca_file": ca}},
                       routes=[{"path": CHAT, "provider": "secure"}])
    for _ in range(3):  # the second and third reuse the pooled TLS connection
        r = post(gw.port, CHAT, chat_body())
        assert r.status == 200, r.body
        assert json.loads(r.body)["choices"][0]["message"]["content"] == "over TLS"


def test_tls_upstream_by_ip_literal(start_gateway, tls_server):
    port, ca = tls_server
    gw = start_gateway(providers={"secure": {"base_url": f"https://127.0.0.1:{port}", "ca_file": ca}},
                       routes=[{"path": CHAT, "provider": "secure"}])
    assert post(gw.port, CHAT, chat_body()).status == 200


def test_tls_upstream_untrusted_is_502(start_gateway, tls_server):
    port, _ = tls_server
    gw = start_gateway(providers={"secure": {"base_url": f"https://localhost:{port}"}},  # system CAs only
                       routes=[{"path": CHAT, "provider": "secure"}])
    r = post(gw.port, CHAT, chat_body())
    assert r.status == 502
    assert "certificate" in json.loads(r.body)["error"]["message"].lower()


def test_tls_upstream_alias_route_sends_the_rewritten_body_whole(start_gateway, tls_server):
    """An alias route sends the client's body with `model` rewritten: over TLS, a 200 KB body
    arrives whole, as JSON, with the target's model."""
    port, ca = tls_server
    gw = start_gateway(providers={"secure": {"base_url": f"https://localhost:{port}", "ca_file": ca}},
                       routes=[{"path": CHAT}],
                       extra_yaml="models:\n  chat-default:\n    tiers:\n      s: [{ target: secure/gpt-4o-mini }]\n"
                                  "    default_tier: s\n")
    text = "The portcullis is lowered at dusk and raised at dawn. " * 4000
    messages = [{"role": "user", "content": text}, {"role": "assistant", "content": "ok"}, {"role": "user", "content": "again"}]
    for _ in range(2):   # the second over the pooled TLS connection
        r = post(gw.port, CHAT, json.dumps({"model": "chat-default", "messages": messages}).encode())
        assert r.status == 200, r.body
        answer = json.loads(r.body)
        assert answer["model"] == "gpt-4o-mini"
        assert answer["x_received"] == {"messages": 3, "characters": len(text) + 2 + 5}


def test_tls_upstream_bodies_either_side_of_one_record(start_gateway, tls_server):
    """A request that fits one TLS record goes out as one write of head and body joined; a
    larger one as the head, then the body. Bodies either side of that size (16 KiB with the
    head) arrive whole over one pooled connection, in turn."""
    port, ca = tls_server
    gw = start_gateway(providers={"secure": {"base_url": f"https://localhost:{port}", "ca_file": ca}},
                       routes=[{"path": CHAT, "provider": "secure"}])
    for n in (1, 100, 15_500, 15_900, 16_100, 16_400, 17_000, 40_000, 3):
        text = ("abcdefghij" * (n // 10 + 1))[:n]
        r = post(gw.port, CHAT, json.dumps({"model": "m", "messages": [{"role": "user", "content": text}]}).encode())
        assert r.status == 200, (n, r.body)
        assert json.loads(r.body)["x_received"] == {"messages": 1, "characters": n}, n
