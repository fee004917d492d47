"""Smart routing end to end (issue 7): aliases, tiers, sticky A/B, failover, circuit breakers.

Several "providers" live on the one FakeProvider: a base URL `/_x/<knobs>` scripts how that
provider behaves (`status=500`, `reset-after=0`, `hang-after=head`, ...), and the fake counts the
requests per prefix, so each test sees which provider was asked and how often.
"""
import json
import socket
import time

import pytest

from conftest import free_port
from httpio import post, read_response, sse_data
from jwt_mint import Key

CHAT = "/v1/chat/completions"
SECRET = "routing-test-secret-0123456789abcdefghij"
TIMEOUTS = {"connect": "1s", "first_byte": "2s", "idle": "2s", "total": "10s"}


def fake_url(fake, knobs=""):
    return f"http://127.0.0.1:{fake.port}" + (f"/_x/{knobs}" if knobs else "")


def body(model="chat-default", stream=False, **extra):
    b = {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}
    if stream:
        b["stream"] = True
    return json.dumps(b).encode()


@pytest.fixture
def key():
    return Key("HS256", "hs1", SECRET.encode())


def routed_gateway(start_gateway, fake, providers, models, routes=None, extra="", workers=None):
    """A gateway with JWT auth and the given `models:` (a YAML text block)."""
    routes = routes or [{"path": CHAT, "timeouts": TIMEOUTS}, {"path": "/chat/pro", "alias": "chat-default", "tier": "pro"}]
    yaml = ("auth:\n  jwt:\n    keys:\n      - { kid: hs1, alg: HS256, secret_env: TEST_JWT_SECRET }\n"
            + models + extra)
    return start_gateway(providers=providers, routes=routes, env={"TEST_JWT_SECRET": SECRET}, extra_yaml=yaml,
                         workers=workers)


def auth(key, **claims):
    return {"Authorization": f"Bearer {key.token(claims)}"}


TIERED = """models:
  chat-default:
    tiers:
      free: [{ target: cheap/gpt-4o-mini }]
      pro:  [{ target: premium/gpt-4o }]
    default_tier: free
  pro-only:
    tiers:
      pro: [{ target: premium/gpt-4.1 }]
"""


def tiered(start_gateway, fake, **kw):
    providers = {"cheap": {"base_url": fake_url(fake, "tokens=3")}, "premium": {"base_url": fake_url(fake, "tokens=4")}}
    return routed_gateway(start_gateway, fake, providers, TIERED, **kw)


def test_tier_picks_the_target_and_model_is_rewritten(start_gateway, fake, key):
    gw = tiered(start_gateway, fake)
    r = post(gw.port, CHAT, body(), auth(key, tier="free"))
    assert r.status == 200, r.body
    assert json.loads(r.body)["model"] == "gpt-4o-mini"
    assert r.headers["x-portcullis-provider"] == "cheap" and r.headers["x-portcullis-model"] == "gpt-4o-mini"
    assert fake.last_request()["target"] == "/_x/tokens=3/v1/chat/completions"
    r = post(gw.port, CHAT, body(), auth(key, tier="pro"))
    assert json.loads(r.body)["model"] == "gpt-4o"
    # No tier claim: the alias's default tier.
    r = post(gw.port, CHAT, body(), auth(key, tier=None))
    assert json.loads(r.body)["model"] == "gpt-4o-mini"
    rec = gw.wait_access(lambda r: r["alias"] == "chat-default" and r["model"] == "gpt-4o")
    assert rec and rec["provider"] == "premium" and rec["attempts"] == 1, rec


def test_only_the_model_value_changes_in_the_body(start_gateway, fake, key):
    gw = tiered(start_gateway, fake)
    raw = b'{"messages":[{"role":"user","content":"hi \\u00e9"}],  "temperature": 1.50, "model" :"chat-default","x_unknown":{"a":[1e3]}}'
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
    hdr = auth(key, tier="free")["Authorization"]
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: " + hdr.encode()
              + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(raw) + raw)
    r = read_response(s)
    s.close()
    assert r.status == 200
    expected = raw.replace(b'"chat-default"', b'"gpt-4o-mini"')
    assert fake.last_request()["body_bytes"] == len(expected)
    assert int(r.headers.get("x-fake-received-bytes", len(expected))) == len(expected)


def test_route_alias_and_tier_escalation_refused(start_gateway, fake, key):
    gw = tiered(start_gateway, fake)
    r = post(gw.port, "/chat/pro", body(model="anything"), auth(key, tier="pro"))
    assert r.status == 200, r.body
    assert json.loads(r.body)["model"] == "gpt-4o"
    assert fake.last_request()["target"].endswith("/v1/chat/completions")
    r = post(gw.port, "/chat/pro", body(), auth(key, tier="free"))
    assert r.status == 403
    assert json.loads(r.body)["error"]["type"] == "permission_error"


def test_unknown_alias_404_and_tier_without_entry_403(start_gateway, fake, key):
    gw = tiered(start_gateway, fake)
    before = fake.stats()["chat_requests"]
    r = post(gw.port, CHAT, body(model="gpt-5-turbo-max"), auth(key, tier="pro"))
    assert r.status == 404
    assert json.loads(r.body)["error"]["code"] == "model_not_found"
    r = post(gw.port, CHAT, body(model="pro-only"), auth(key, tier="free"))
    assert r.status == 403 and b"pro-only" in r.body
    r = post(gw.port, CHAT, b'{"messages":[]}', auth(key, tier="pro"))
    assert r.status == 400
    r = post(gw.port, CHAT, b'{"model":"chat-default","model":"pro-only"}', auth(key, tier="pro"))
    assert r.status == 400
    assert fake.stats()["chat_requests"] == before


def test_models_endpoint_lists_the_tiers_aliases(start_gateway, fake, key):
    gw = tiered(start_gateway, fake)
    import urllib.request
    def models(tier):
        req = urllib.request.Request(f"{gw.base}/v1/models", headers=auth(key, tier=tier))
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read())
    free = models("free")
    assert free["object"] == "list" and [m["id"] for m in free["data"]] == ["chat-default"]
    assert [m["id"] for m in models("pro")["data"]] == ["chat-default", "pro-only"]
    assert all(m["object"] == "model" for m in models("pro")["data"])


def test_passthrough_models_and_max_tokens_cap(start_gateway, fake, key):
    providers = {"cheap": {"base_url": fake_url(fake, "tokens=3")}, "direct": {"base_url": fake_url(fake)}}
    models = """models:
  chat-default:
    tiers:
      free: [{ target: cheap/gpt-4o-mini }]
tiers:
  free: { max_tokens_cap: 100 }
"""
    routes = [{"path": CHAT, "provider": "direct", "passthrough_models": True},
              {"path": "/strict/chat", "alias": "chat-default", "max_tokens_policy": "reject"}]
    gw = routed_gateway(start_gateway, fake, providers, models, routes=routes)
    r = post(gw.port, CHAT, body(model="my-own-model"), auth(key, tier="free"))
    assert r.status == 200 and json.loads(r.body)["model"] == "my-own-model"
    assert fake.last_request()["target"] == "/v1/chat/completions"
    # Alias through the passthrough route, max_tokens clamped to the tier's cap.
    r = post(gw.port, CHAT, body(max_tokens=5000), auth(key, tier="free"))
    assert r.status == 200 and json.loads(r.body)["model"] == "gpt-4o-mini"
    assert fake.last_request()["body_bytes"] == len(body(max_tokens=100).replace(b"chat-default", b"gpt-4o-mini"))
    r = post(gw.port, "/strict/chat", body(max_tokens=5000), auth(key, tier="free"))
    assert r.status == 400 and b"at most 100" in r.body


# failover -------------------------------------------------------------------------------------------

FAILOVER = """models:
  chat-default:
    tiers:
      pro: [{{ target: primary/gpt-4o }}]
    fallback: [backup/gpt-4o-backup]
routing:
  breaker: {{ failures: {failures}, cooldown: {cooldown} }}
"""


def failover_gateway(start_gateway, fake, primary, failures=5, cooldown="30s", routes=None, workers=None):
    providers = {"primary": {"base_url": primary}, "backup": {"base_url": fake_url(fake, "tokens=2")}}
    return routed_gateway(start_gateway, fake, providers, FAILOVER.format(failures=failures, cooldown=cooldown), routes=routes,
                          workers=workers)


@pytest.mark.parametrize("knobs", ["status=500", "status=503", "status=429,retry-after=1", "reset-after=0", "hang-after=head"])
def test_failover_gives_one_clean_response_from_the_next_target(start_gateway, fake, key, knobs):
    fake.reset()
    gw = failover_gateway(start_gateway, fake, fake_url(fake, knobs))
    for stream in (False, True):
        r = post(gw.port, CHAT, body(stream=stream), auth(key, tier="pro"), deadline=10)
        assert r.status == 200, (knobs, r.status, r.body[:300])
        assert r.headers["x-portcullis-provider"] == "backup"
        if stream:
            events = sse_data(r.body)
            assert events[-1] == (None, "[DONE]") and not any(e == "error" for e, _ in events)
            assert json.loads(events[0][1])["model"] == "gpt-4o-backup"
        else:
            assert json.loads(r.body)["model"] == "gpt-4o-backup"
    by = fake.stats()["by_prefix"]
    assert by.get("tokens=2") == 2
    rec = gw.wait_access(lambda r: r["attempts"] == 2)
    assert rec and rec["outcome"] == "ok", rec


def test_failover_from_a_refused_connection(start_gateway, fake, key):
    gw = failover_gateway(start_gateway, fake, f"http://127.0.0.1:{free_port()}")
    r = post(gw.port, CHAT, body(), auth(key, tier="pro"))
    assert r.status == 200 and r.headers["x-portcullis-provider"] == "backup"


def test_every_target_failing_returns_the_last_providers_own_error(start_gateway, fake, key):
    providers = {"primary": {"base_url": fake_url(fake, "status=503")}, "backup": {"base_url": fake_url(fake, "status=429,retry-after=7")}}
    gw = routed_gateway(start_gateway, fake, providers, FAILOVER.format(failures=5, cooldown="30s"))
    r = post(gw.port, CHAT, body(), auth(key, tier="pro"))
    assert r.status == 429
    assert r.headers["retry-after"] == "7"
    assert json.loads(r.body)["error"]["code"] == "rate_limit_exceeded" or "error" in json.loads(r.body)
    assert r.headers["x-portcullis-provider"] == "backup"


def test_no_retry_after_the_first_byte(start_gateway, fake, key):
    fake.reset()
    gw = failover_gateway(start_gateway, fake, fake_url(fake, "reset-after=2"))
    r = post(gw.port, CHAT, body(stream=True), auth(key, tier="pro"), deadline=10)
    assert r.status == 200
    events = sse_data(r.body)
    assert events[-1][0] == "error", events
    assert r.headers["x-portcullis-provider"] == "primary"
    assert fake.stats()["by_prefix"].get("tokens=2") is None, "retried after bytes reached the client"


def test_breaker_opens_skips_probes_and_closes(start_gateway, fake, key):
    fake.reset()
    # One worker, so that one breaker sees every request.
    gw = failover_gateway(start_gateway, fake, fake_url(fake, "status=500"), failures=2, cooldown="1s", workers=1)
    def one():
        r = post(gw.port, CHAT, body(), auth(key, tier="pro"))
        assert r.status == 200 and r.headers["x-portcullis-provider"] == "backup"
        return fake.stats()["by_prefix"].get("status=500", 0)
    counts = [one() for _ in range(6)]
    assert counts == [1, 2, 2, 2, 2, 2], "the breaker did not open after 2 failures, or still sent requests"
    text = open_metrics(gw)
    assert 'portcullis_target_breaker_open{target="primary/gpt-4o"} 1' in text
    assert 'portcullis_target_failures_total{target="primary/gpt-4o",kind="status"}' in text
    time.sleep(1.2)
    assert one() == 3, "no half-open probe after the cool-down"
    assert one() == 3, "a failed probe must re-open the breaker"


def test_breaker_closes_after_a_successful_probe(start_gateway, fake, key, tmp_path):
    """The primary fails by timing out before its head, then recovers: the probe closes the breaker."""
    fake.reset()
    providers = {"primary": {"base_url": fake_url(fake, "first-byte-delay-ms=1500")},
                 "backup": {"base_url": fake_url(fake, "tokens=2")}}
    routes = [{"path": CHAT, "timeouts": {"connect": "1s", "first_byte": "1s", "idle": "2s", "total": "10s"}}]
    gw = routed_gateway(start_gateway, fake, providers, FAILOVER.format(failures=1, cooldown="1s"), routes=routes, workers=1)
    r = post(gw.port, CHAT, body(), auth(key, tier="pro"))
    assert r.status == 200 and r.headers["x-portcullis-provider"] == "backup"
    assert 'portcullis_target_breaker_open{target="primary/gpt-4o"} 1' in open_metrics(gw)
    fast = {**auth(key, tier="pro"), "x-fake-first-byte-delay-ms": "0"}
    r = post(gw.port, CHAT, body(), fast)
    assert r.headers["x-portcullis-provider"] == "backup", "an open breaker must skip the primary"
    time.sleep(1.2)
    r = post(gw.port, CHAT, body(), fast)   # the half-open probe; the primary has recovered
    assert r.status == 200 and r.headers["x-portcullis-provider"] == "primary"
    assert 'portcullis_target_breaker_open{target="primary/gpt-4o"} 0' in open_metrics(gw)
    r = post(gw.port, CHAT, body(), fast)
    assert r.headers["x-portcullis-provider"] == "primary"


def test_retry_after_opens_the_breaker_for_that_long(start_gateway, fake, key):
    fake.reset()
    gw = failover_gateway(start_gateway, fake, fake_url(fake, "status=429,retry-after=60"), failures=100, workers=1)
    for _ in range(3):
        r = post(gw.port, CHAT, body(), auth(key, tier="pro"))
        assert r.status == 200 and r.headers["x-portcullis-provider"] == "backup"
    assert fake.stats()["by_prefix"].get("status=429,retry-after=60") == 1


def open_metrics(gw):
    import urllib.request
    with urllib.request.urlopen(f"{gw.base}/metrics", timeout=5) as r:
        return r.read().decode()


def test_openai_sdk_streams_through_an_alias(start_gateway, fake, key):
    openai = pytest.importorskip("openai")
    gw = tiered(start_gateway, fake)
    client = openai.OpenAI(base_url=f"{gw.base}/v1", api_key=key.token({"tier": "pro"}), max_retries=0)
    stream = client.chat.completions.create(model="chat-default", messages=[{"role": "user", "content": "hi"}],
                                            stream=True, stream_options={"include_usage": True})
    text, models = "", set()
    for chunk in stream:
        models.add(chunk.model)
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
    assert text and models == {"gpt-4o"}
    listed = client.models.list()
    assert [m.id for m in listed.data] == ["chat-default", "pro-only"]
