"""An OpenAI client served by an Anthropic target (failover and aliases): the request is
translated to the Messages API, the answer (JSON or SSE, event by event) back to OpenAI's format."""
import json

import pytest

from httpio import post, sse_data
from test_routing import CHAT, SECRET, auth, fake_url, key  # noqa: F401  (key is a fixture)

MODELS = """models:
  chat-default:
    tiers:
      pro: [{ target: primary/gpt-4o }]
    fallback: [claude/claude-sonnet-4-5]
"""


@pytest.fixture
def claude_gateway(start_gateway, fake):
    def start(primary_knobs="status=503", extra=""):
        providers = {"primary": {"base_url": fake_url(fake, primary_knobs)},
                     "claude": {"base_url": fake_url(fake, "tokens=4"), "kind": "anthropic", "api_key_env": "ANTHROPIC_KEY"}}
        return start_gateway(providers=providers, routes=[{"path": CHAT}], env={"TEST_JWT_SECRET": SECRET, "ANTHROPIC_KEY": "sk-ant-test"},
                             extra_yaml="auth:\n  jwt:\n    keys:\n      - { kid: hs1, alg: HS256, secret_env: TEST_JWT_SECRET }\n" + MODELS + extra)
    return start


def test_failover_to_anthropic_json(claude_gateway, fake, key):
    gw = claude_gateway()
    r = post(gw.port, CHAT, json.dumps({
        "model": "chat-default", "max_tokens": 50,
        "messages": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "hi"}]}).encode(),
        auth(key, tier="pro"))
    assert r.status == 200, r.body
    assert r.headers["x-portcullis-provider"] == "claude"
    out = json.loads(r.body)
    assert out["object"] == "chat.completion"
    assert out["choices"][0]["message"]["content"] == "The gate is open"
    assert out["choices"][0]["finish_reason"] == "stop"
    assert out["usage"]["completion_tokens"] == 4 and out["usage"]["total_tokens"] == out["usage"]["prompt_tokens"] + 4
    assert int(r.headers["content-length"]) == len(r.body)
    seen = fake.last_request()
    assert seen["target"].endswith("/v1/messages")
    headers = dict(seen["headers"])
    assert headers["x-api-key"] == "sk-ant-test" and headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in headers


@pytest.mark.parametrize("include_usage", [False, True])
def test_failover_to_anthropic_stream(claude_gateway, key, include_usage):
    gw = claude_gateway()
    b = {"model": "chat-default", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    if include_usage:
        b["stream_options"] = {"include_usage": True}
    r = post(gw.port, CHAT, json.dumps(b).encode(), auth(key, tier="pro"))
    assert r.status == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = sse_data(r.body)
    assert events[-1] == (None, "[DONE]")
    chunks = [json.loads(d) for _, d in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "The gate is open"
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert finishes == ["stop"]
    usage = [c["usage"] for c in chunks if c.get("usage")]
    if include_usage:
        assert usage and usage[-1]["completion_tokens"] == 4
    else:
        assert not usage


def test_translated_stream_settles_its_tokens_and_hides_the_usage_chunk(claude_gateway, key):
    """A token limit: the gateway asks for usage (the client did not), the translated stream's
    content chunks pass the usage tap unread, and the usage chunk the translator writes last is
    read for settlement and hidden from the client."""
    gw = claude_gateway(extra="limits:\n  default_tier: pro\n  tiers:\n    pro: { tokens_per_day: 100000 }\n")
    b = json.dumps({"model": "chat-default", "stream": True, "max_tokens": 200,
                    "messages": [{"role": "user", "content": "hi"}]}).encode()
    h = auth(key, tier="pro")
    r = post(gw.port, CHAT, b, h)
    assert r.status == 200
    events = sse_data(r.body)
    chunks = [json.loads(d) for _, d in events[:-1]]
    assert events[-1] == (None, "[DONE]") and all(c["choices"] for c in chunks), "the hidden usage chunk reached the client"
    assert not any(c.get("usage") for c in chunks)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "The gate is open"
    before = int(r.headers["x-ratelimit-remaining-tokens"])   # the stream's reservation held: ~200 + the prompt
    r2 = post(gw.port, CHAT, json.dumps({"model": "chat-default", "max_tokens": 10,
                                         "messages": [{"role": "user", "content": "hi"}]}).encode(), h)
    # The stream used its prompt + 4 tokens: most of its 200 came back before the second decision.
    assert int(r2.headers["x-ratelimit-remaining-tokens"]) > before + 150, (before, r2.headers["x-ratelimit-remaining-tokens"])


def test_untranslatable_request_is_400_without_reaching_anthropic(claude_gateway, fake, key):
    gw = claude_gateway(primary_knobs="status=500")
    fake.reset()
    r = post(gw.port, CHAT, json.dumps({"model": "chat-default", "n": 3, "messages": [{"role": "user", "content": "hi"}]}).encode(),
             auth(key, tier="pro"))
    # The primary's 500 is held; the Anthropic target cannot take n=3: the last answer is the 400.
    assert r.status == 400 and b"n > 1" in r.body
    assert fake.stats()["by_prefix"].get("tokens=4") is None


def test_openai_sdk_through_an_anthropic_target(claude_gateway, key):
    openai = pytest.importorskip("openai")
    gw = claude_gateway()
    client = openai.OpenAI(base_url=f"{gw.base}/v1", api_key=key.token({"tier": "pro"}), max_retries=0)
    r = client.chat.completions.create(model="chat-default", messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content == "The gate is open"
    stream = client.chat.completions.create(model="chat-default", messages=[{"role": "user", "content": "hi"}], stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "The gate is open"


@pytest.mark.parametrize("status,expected", [(529, 503), (429, 429), (400, 400)])
def test_anthropic_errors_in_openai_shape(start_gateway, fake, key, status, expected):
    providers = {"claude": {"base_url": fake_url(fake, f"status={status},retry-after=3"), "kind": "anthropic"}}
    models = "models:\n  chat-default:\n    tiers:\n      pro: [{ target: claude/claude-sonnet-4-5 }]\n"
    gw = start_gateway(providers=providers, routes=[{"path": CHAT}], env={"TEST_JWT_SECRET": SECRET},
                       extra_yaml="auth:\n  jwt:\n    keys:\n      - { kid: hs1, alg: HS256, secret_env: TEST_JWT_SECRET }\n" + models)
    r = post(gw.port, CHAT, json.dumps({"model": "chat-default", "messages": [{"role": "user", "content": "hi"}]}).encode(),
             auth(key, tier="pro"))
    assert r.status == expected, (r.status, r.body)
    err = json.loads(r.body)["error"]
    assert set(err) == {"message", "type", "param", "code"}
    if status == 429:
        assert err["type"] == "rate_limit_error" and err["code"] == "rate_limit_exceeded"
        assert r.headers["retry-after"] == "3"
    if status == 529:
        assert err["type"] == "server_error" and err["code"] == "overloaded_error"


# native pass-through: Anthropic SDK clients on /v1/messages ----------------------------------------

NATIVE = "/v1/messages"


@pytest.fixture
def native_gateway(start_gateway, fake):
    def start(extra=""):
        providers = {"claude": {"base_url": fake_url(fake, "tokens=3"), "kind": "anthropic", "api_key_env": "ANTHROPIC_KEY"}}
        return start_gateway(providers=providers, routes=[{"path": NATIVE, "provider": "claude", "methods": ["POST"]}],
                             env={"TEST_JWT_SECRET": SECRET, "ANTHROPIC_KEY": "sk-ant-real"},
                             extra_yaml="auth:\n  jwt:\n    keys:\n      - { kid: hs1, alg: HS256, secret_env: TEST_JWT_SECRET }\n" + extra)
    return start


def messages_body(stream=False):
    b = {"model": "claude-test", "max_tokens": 64, "system": "Be terse.", "messages": [{"role": "user", "content": "hi"}]}
    if stream:
        b["stream"] = True
    return json.dumps(b).encode()


@pytest.mark.parametrize("credential", ["authorization", "x-api-key"])
def test_native_messages_pass_through(native_gateway, fake, key, credential):
    gw = native_gateway()
    tok = key.token({"tier": "pro"})
    h = {"Authorization": f"Bearer {tok}"} if credential == "authorization" else {"x-api-key": tok}
    r = post(gw.port, NATIVE, messages_body(), {**h, "anthropic-version": "2023-06-01", "anthropic-beta": "tools-2024-04-04"})
    assert r.status == 200, r.body
    out = json.loads(r.body)
    assert out["type"] == "message" and out["content"][0]["text"] == "The gate is"
    seen = dict(fake.last_request()["headers"])
    assert seen["x-api-key"] == "sk-ant-real", "the caller's JWT must never reach the provider"
    assert seen["anthropic-version"] == "2023-06-01" and seen["anthropic-beta"] == "tools-2024-04-04"
    assert seen["x-tenant-id"] == "acme"
    assert fake.last_request()["target"].endswith("/v1/messages")
    assert fake.last_request()["body_bytes"] == len(messages_body()), "the native request must go unchanged"


def test_native_stream_and_usage_settlement(native_gateway, key):
    gw = native_gateway(extra="limits:\n  default_tier: pro\n  tiers:\n    pro: { tokens_per_day: 100000 }\n")
    h = {"Authorization": f"Bearer {key.token({'tier': 'pro'})}"}
    r = post(gw.port, NATIVE, messages_body(stream=True), h)
    assert r.status == 200
    types = [json.loads(d)["type"] for _, d in sse_data(r.body)]
    assert types[0] == "message_start" and types[-1] == "message_stop"
    before = int(r.headers["x-ratelimit-remaining-tokens"])
    r2 = post(gw.port, NATIVE, messages_body(), h)
    # The stream reserved ~64 + prompt; it used its input tokens + 3: most of the reservation came back.
    assert int(r2.headers["x-ratelimit-remaining-tokens"]) > before - 64, (before, r2.headers["x-ratelimit-remaining-tokens"])


def test_gateway_errors_in_anthropic_shape_on_messages(native_gateway):
    gw = native_gateway()
    r = post(gw.port, NATIVE, messages_body())
    assert r.status == 401
    err = json.loads(r.body)
    assert err["type"] == "error" and err["error"]["type"] == "authentication_error"


def test_anthropic_sdk_against_messages(native_gateway, key):
    anthropic = pytest.importorskip("anthropic")
    gw = native_gateway()
    client = anthropic.Anthropic(base_url=gw.base, api_key=key.token({"tier": "pro"}), max_retries=0)
    m = client.messages.create(model="claude-test", max_tokens=64, messages=[{"role": "user", "content": "hi"}])
    assert m.content[0].text == "The gate is"
    with client.messages.stream(model="claude-test", max_tokens=64, messages=[{"role": "user", "content": "hi"}]) as s:
        assert "".join(s.text_stream) == "The gate is"
    bad = anthropic.Anthropic(base_url=gw.base, api_key="not-a-jwt", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        bad.messages.create(model="claude-test", max_tokens=8, messages=[{"role": "user", "content": "hi"}])


def test_openai_sdk_tool_calls_through_an_anthropic_target(claude_gateway, key):
    openai = pytest.importorskip("openai")
    gw = claude_gateway()
    client = openai.OpenAI(base_url=f"{gw.base}/v1", api_key=key.token({"tier": "pro"}), max_retries=0,
                           default_headers={"x-fake-tool": "open_gate"})
    tools = [{"type": "function", "function": {"name": "open_gate", "description": "Opens a gate",
                                                "parameters": {"type": "object", "properties": {"gate": {"type": "string"}}}}}]
    msgs = [{"role": "user", "content": "open the north gate"}]
    r = client.chat.completions.create(model="chat-default", messages=msgs, tools=tools)
    call = r.choices[0].message.tool_calls[0]
    assert r.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "open_gate" and json.loads(call.function.arguments) == {"gate": "north"}
    # Streamed: the arguments arrive in pieces.
    stream = client.chat.completions.create(model="chat-default", messages=msgs, tools=tools, stream=True)
    name, args, finish = None, "", None
    for chunk in stream:
        if not chunk.choices:
            continue
        for tc in chunk.choices[0].delta.tool_calls or []:
            name = tc.function.name or name
            args += tc.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert name == "open_gate" and json.loads(args) == {"gate": "north"} and finish == "tool_calls"
    # And the conversation continues with the tool's result, translated to tool_use / tool_result.
    follow = msgs + [{"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
                     {"role": "tool", "tool_call_id": call.id, "content": "opened"}]
    client2 = openai.OpenAI(base_url=f"{gw.base}/v1", api_key=key.token({"tier": "pro"}), max_retries=0)
    r = client2.chat.completions.create(model="chat-default", messages=follow, tools=tools)
    assert r.choices[0].message.content == "The gate is open"


def test_native_stream_failure_ends_with_an_anthropic_error_event(start_gateway, fake, key):
    providers = {"claude": {"base_url": fake_url(fake, "reset-after=3"), "kind": "anthropic"}}
    gw = start_gateway(providers=providers, routes=[{"path": NATIVE, "provider": "claude", "methods": ["POST"]}],
                       env={"TEST_JWT_SECRET": SECRET},
                       extra_yaml="auth:\n  jwt:\n    keys:\n      - { kid: hs1, alg: HS256, secret_env: TEST_JWT_SECRET }\n")
    r = post(gw.port, NATIVE, messages_body(stream=True), {"x-api-key": key.token({"tier": "pro"})})
    assert r.status == 200
    events = sse_data(r.body)
    name, data = events[-1]
    assert name == "error" and json.loads(data)["type"] == "error" and "message" in json.loads(data)["error"]
