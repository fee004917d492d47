"""The official OpenAI Python SDK as a real client, streaming and not."""
import pytest

openai = pytest.importorskip("openai")


def test_openai_sdk_non_streaming(gateway):
    client = openai.OpenAI(base_url=f"{gateway.base}/v1", api_key="unused-by-the-fake", max_retries=0)
    r = client.chat.completions.create(model="chat-default", messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content == "The gate is open."
    assert r.usage.total_tokens > 0


def test_openai_sdk_streaming_with_usage(gateway):
    client = openai.OpenAI(base_url=f"{gateway.base}/v1", api_key="unused-by-the-fake", max_retries=0)
    stream = client.chat.completions.create(model="chat-default", messages=[{"role": "user", "content": "hi"}],
                                            stream=True, stream_options={"include_usage": True})
    text, usage = "", None
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        if chunk.usage:
            usage = chunk.usage
    assert text == "The gate is open."
    assert usage.completion_tokens == 5


def test_openai_sdk_sees_gateway_errors(start_gateway):
    gw = start_gateway(providers={"down": {"base_url": "http://127.0.0.1:9"}},
                       routes=[{"path": "/v1/chat/completions", "provider": "down"}])
    client = openai.OpenAI(base_url=f"{gw.base}/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 502
