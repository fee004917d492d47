"""Edge auth and tenant isolation end to end: real gateway, real fake provider, tokens minted here."""
import base64
import hashlib
import hmac
import json
import os
import signal
import subprocess
import time

import pytest

from conftest import BIN, chat_body, raw_request
from httpio import post


from jwt_mint import Key, b64u  # noqa: E402

CHAT = "/v1/chat/completions"
SECRET = "integration-test-secret-0123456789abcdef"


@pytest.fixture
def keys(tmp_path):
    ks = {"hs1": Key("HS256", "hs1", SECRET.encode()), "rs1": Key("RS256", "rs1")}
    (tmp_path / "rs1.pem").write_bytes(ks["rs1"].public_pem())
    return ks


def auth_yaml(tmp_path, extra_keys="", jwks=None):
    lines = ["auth:", "  jwt:", '    issuer: "https://auth.example.com"', '    audience: "portcullis"', "    leeway: 5s",
             "    keys:", "      - { kid: hs1, alg: HS256, secret_env: TEST_JWT_SECRET }",
             f"      - {{ kid: rs1, alg: RS256, public_key_file: {tmp_path / 'rs1.pem'} }}"]
    lines += ["      " + l for l in extra_keys.strip().splitlines()] if extra_keys.strip() else []
    if jwks:
        lines.append(f"    jwks_file: {jwks}")
    lines.append('  public_paths: ["/healthz", "/metrics"]')
    return "\n".join(lines) + "\n"


@pytest.fixture
def auth_gateway(start_gateway, tmp_path, keys):
    def start(extra_keys="", jwks=None, routes=None):
        return start_gateway(routes=routes, env={"TEST_JWT_SECRET": SECRET},
                             extra_yaml=auth_yaml(tmp_path, extra_keys, jwks))
    return start


def bearer(tok):
    return {"Authorization": f"Bearer {tok}"}


def test_spoofed_tenant_headers_are_replaced_by_the_verified_tenant(auth_gateway, keys, fake):
    gw = auth_gateway()
    r = post(gw.port, CHAT, chat_body(), {**bearer(keys["hs1"].token()), "X-Tenant-Id": "other",
                                          "x-tenant-id": "other2", "X-USER-ID": "mallory", "X-Tenant-Tier": "enterprise"})
    assert r.status == 200, r.body
    headers = fake.last_request()["headers"]
    tenant = [v for k, v in headers if k == "x-tenant-id"]
    assert tenant == ["acme"]
    assert [v for k, v in headers if k == "x-user-id"] == ["user-1"]
    assert [v for k, v in headers if k == "x-tenant-tier"] == ["pro"]
    assert not any(k == "authorization" for k, _ in headers), "the client's JWT must not reach the provider"


def test_no_token_never_reaches_the_provider(auth_gateway, fake):
    gw = auth_gateway()
    before = fake.stats()["chat_requests"]
    r = post(gw.port, CHAT, chat_body(), {"X-Tenant-Id": "acme"})
    assert r.status == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert json.loads(r.body)["error"]["type"] == "authentication_error"
    r = post(gw.port, CHAT, chat_body(), {"Authorization": "Basic dXNlcjpwYXNz"})
    assert r.status == 401 and r.headers["www-authenticate"] == "Bearer"
    assert fake.stats()["chat_requests"] == before


@pytest.mark.parametrize("case,expect", [
    ("bad_signature", "signature"), ("expired", "expired"), ("wrong_issuer", "issuer"),
    ("wrong_audience", "audience"), ("unknown_kid", "Unknown signing key"), ("no_exp", "exp"),
    ("not_yet_valid", "not valid yet"), ("alg_none", "malformed"), ("alg_none_sig", "algorithm"),
    ("garbage", "Malformed"),
])
def test_rejected_tokens_are_401_invalid_token(auth_gateway, keys, fake, case, expect):
    gw = auth_gateway()
    k = keys["hs1"]
    now = int(time.time())
    tok = {
        "bad_signature": k.token()[:-4] + "AAAA",
        "expired": k.token(exp=now - 60),
        "wrong_issuer": k.token(iss="https://evil.example.com"),
        "wrong_audience": k.token(aud="someone-else"),
        "unknown_kid": k.token(header={"kid": "nope"}),
        "no_exp": k.token(exp=None),
        "not_yet_valid": k.token(nbf=now + 3600),
        "alg_none": b64u(json.dumps({"alg": "none", "kid": "hs1"}).encode()) + "." + k.token().split(".")[1] + ".",
        "alg_none_sig": b64u(json.dumps({"alg": "none", "kid": "hs1"}).encode()) + "." + k.token().split(".")[1] + ".AAAA",
        "garbage": "not-a-jwt",
    }[case]
    before = fake.stats()["chat_requests"]
    r = post(gw.port, CHAT, chat_body(), bearer(tok))
    assert r.status == 401, (case, r.body)
    err = json.loads(r.body)["error"]
    assert err["code"] == "invalid_token"
    assert expect.lower() in err["message"].lower(), err
    assert SECRET not in err["message"]
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert fake.stats()["chat_requests"] == before


def test_token_without_tenant_is_403(auth_gateway, keys, fake):
    gw = auth_gateway()
    r = post(gw.port, CHAT, chat_body(), bearer(keys["hs1"].token(tenant_id=None)))
    assert r.status == 403
    assert "tenant" in json.loads(r.body)["error"]["message"]


def test_hs_rs_confusion_is_refused(auth_gateway, keys, tmp_path):
    gw = auth_gateway()
    # An attacker signs HS256 with the RSA public key bytes and names the RS256 kid.
    forged = Key("HS256", "rs1", keys["rs1"].public_pem())
    r = post(gw.port, CHAT, chat_body(), bearer(forged.token()))
    assert r.status == 401
    assert "algorithm" in json.loads(r.body)["error"]["message"]


def test_every_algorithm(auth_gateway, tmp_path):
    algs = ["HS384", "HS512", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"]
    ks = {a: Key(a, "k-" + a.lower(), b"x" * 64) for a in algs}
    extra = []
    for a, k in ks.items():
        if a.startswith("HS"):
            (tmp_path / f"{k.kid}.secret").write_bytes(k.secret + b"\n")
            extra.append(f"- {{ kid: {k.kid}, alg: {a}, secret_file: {tmp_path / (k.kid + '.secret')} }}")
        else:
            (tmp_path / f"{k.kid}.pem").write_bytes(k.public_pem())
            extra.append(f"- {{ kid: {k.kid}, alg: {a}, public_key_file: {tmp_path / (k.kid + '.pem')} }}")
    gw = auth_gateway("\n".join(extra))
    for a, k in ks.items():
        r = post(gw.port, CHAT, chat_body(), bearer(k.token()))
        assert r.status == 200, (a, r.body)


def test_jwks_and_key_rotation_on_sighup(auth_gateway, tmp_path, fake):
    old, new = Key("ES256", "jw-old"), Key("RS256", "jw-new")
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [old.jwk()]}))
    gw = auth_gateway(jwks=str(jwks))
    assert post(gw.port, CHAT, chat_body(), bearer(old.token())).status == 200
    assert post(gw.port, CHAT, chat_body(), bearer(new.token())).status == 401
    jwks.write_text(json.dumps({"keys": [new.jwk()]}))
    gw.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 3
    while time.time() < deadline and "generation 2 loaded" not in gw.log():
        time.sleep(0.02)
    assert post(gw.port, CHAT, chat_body(), bearer(new.token())).status == 200
    assert post(gw.port, CHAT, chat_body(), bearer(old.token())).status == 401  # cached entry dropped too
    # A broken JWKS on reload keeps the keys in force.
    jwks.write_text("{broken")
    gw.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 3
    while time.time() < deadline and "reload failed" not in gw.log():
        time.sleep(0.02)
    assert "reload failed" in gw.log() and "jwks_file" in gw.log()
    assert post(gw.port, CHAT, chat_body(), bearer(new.token())).status == 200


def test_public_paths_need_no_token(auth_gateway):
    gw = auth_gateway()
    out = raw_request(gw.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200")


def test_hmac_signed_route(auth_gateway, fake):
    routes = [{"path": CHAT, "provider": "local"},
              {"path": "/hooks/*", "provider": "local",
               "auth": {"hmac": {"header": "X-Shopify-Hmac-Sha256", "secret_env": "TEST_JWT_SECRET",
                                 "encoding": "base64", "tenant_header": "X-Shopify-Shop-Domain",
                                 "mode": "body_only"}}}]
    gw = auth_gateway(routes=routes)
    body = chat_body()
    sig = base64.b64encode(hmac.new(SECRET.encode(), body, hashlib.sha256).digest()).decode()
    r = post(gw.port, "/hooks/chat/completions", body, {"X-Shopify-Hmac-Sha256": sig, "X-Shopify-Shop-Domain": "shop-1",
                                                       "X-Tenant-Id": "spoof"})
    assert r.status == 200, r.body
    assert [v for k, v in fake.last_request()["headers"] if k == "x-tenant-id"] == ["shop-1"]
    assert "x-shopify-hmac-sha256" not in [k for k, _ in fake.last_request()["headers"]], "the signature stays at the edge"
    bad = base64.b64encode(b"\0" * 32).decode()
    r = post(gw.port, "/hooks/chat/completions", body, {"X-Shopify-Hmac-Sha256": bad, "X-Shopify-Shop-Domain": "shop-1"})
    assert r.status == 401
    r = post(gw.port, "/hooks/chat/completions", body + b" ", {"X-Shopify-Hmac-Sha256": sig, "X-Shopify-Shop-Domain": "shop-1"})
    assert r.status == 401
    # The JWT route still demands a token.
    assert post(gw.port, CHAT, body).status == 401


def test_check_reports_key_problems_with_location(tmp_path):
    cfg = tmp_path / "auth.yaml"
    cfg.write_text("providers: { p: { base_url: 'http://127.0.0.1:1' } }\nroutes: [ { path: /x, provider: p } ]\n"
                   "auth:\n  jwt:\n    keys:\n      - { kid: r, alg: RS256, public_key_file: /nonexistent.pem }\n")
    r = subprocess.run([os.path.join(BIN, "portcullis"), "check", "--config", str(cfg)], capture_output=True, text=True)
    assert r.returncode == 1
    assert f"{cfg}:6:9: auth.jwt.keys[0]: cannot read public_key_file /nonexistent.pem" in r.stderr


def test_access_log_and_token_metrics_by_tenant_with_a_cap(start_gateway, tmp_path, keys):
    # One worker: the label goes to the first tenant *recorded*, and a request is recorded just
    # after its last byte is written; with two workers the next request's worker could record
    # first (seen once on a loaded CI machine).
    gw = start_gateway(env={"TEST_JWT_SECRET": SECRET}, workers=1,
                       extra_yaml=auth_yaml(tmp_path) + "metrics: { max_tenants: 1 }\n")
    k = keys["hs1"]
    assert post(gw.port, CHAT + "?api-key=secret", chat_body(), bearer(k.token(tenant_id="acme", sub="u1"))).status == 200
    assert post(gw.port, CHAT, chat_body(), bearer(k.token(tenant_id="globex", sub="u2"))).status == 200
    rec = gw.wait_access(lambda r: r["tenant"] == "acme")
    assert rec, gw.log()
    assert rec["user"] == "u1" and rec["route"] == CHAT and rec["path"] == CHAT      # no query string
    assert rec["status"] == 200 and rec["outcome"] == "ok" and rec["provider"] == "local"
    assert rec["prompt_tokens"] > 0 and rec["completion_tokens"] == 5
    assert rec["ttfb_ms"] <= rec["duration_ms"] and rec["attempts"] == 1
    assert "secret" not in gw.log() and SECRET not in gw.log() and "eyJ" not in gw.log()
    text = raw_request(gw.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").decode()
    # The first tenant gets its label, the next is "other" (metrics.max_tenants: 1).
    assert 'portcullis_tokens_total{tenant="acme",model="chat-default",type="completion"} 5' in text, text
    assert 'portcullis_tokens_total{tenant="other",model="chat-default",type="completion"} 5' in text
    assert 'portcullis_requests_total{route="/v1/chat/completions",class="2xx",outcome="ok"} 2' in text
    assert 'portcullis_upstream_attempts_total{provider="local"} 2' in text
    assert "portcullis_request_duration_seconds_count 2" in text
    assert 'portcullis_time_to_first_byte_seconds_bucket{le="+Inf"} 2' in text


def test_metrics_without_the_access_log(start_gateway, tmp_path, keys):
    # With log.access off the request is counted from its values directly (no summary): the
    # same route, outcome, timing, attempt and per-tenant token series as with the log on.
    gw = start_gateway(env={"TEST_JWT_SECRET": SECRET}, workers=1, log_access="false",
                       extra_yaml=auth_yaml(tmp_path) + "metrics: { max_tenants: 1 }\n")
    k = keys["hs1"]
    assert post(gw.port, CHAT, chat_body(), bearer(k.token(tenant_id="acme", sub="u1"))).status == 200
    assert post(gw.port, CHAT, chat_body(), bearer(k.token(tenant_id="acme", sub="u1"))).status == 200
    assert post(gw.port, CHAT, chat_body(), bearer(k.token(tenant_id="globex", sub="u2"))).status == 200
    assert post(gw.port, CHAT, chat_body(), bearer(k.token(tenant_id="acme", sub="u1"))).status == 200
    want = ['portcullis_tokens_total{tenant="acme",model="chat-default",type="completion"} 15',
            'portcullis_tokens_total{tenant="other",model="chat-default",type="completion"} 5',
            'portcullis_requests_total{route="/v1/chat/completions",class="2xx",outcome="ok"} 4',
            'portcullis_upstream_attempts_total{provider="local"} 4',
            "portcullis_request_duration_seconds_count 4",
            'portcullis_time_to_first_byte_seconds_bucket{le="+Inf"} 4']
    text = ""
    for _ in range(50):       # (a request is recorded just after its last byte is written)
        text = raw_request(gw.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").decode()
        if all(w in text for w in want):
            break
        time.sleep(0.05)
    for w in want:
        assert w in text, text
    assert '"tenant"' not in gw.log()         # no access lines
