"""Many simultaneous streams through one gateway (bounded: 500 streams, 30 s deadline)."""
import asyncio
import json

from conftest import chat_body

CHAT = "/v1/chat/completions"


async def one_stream(port, i):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = chat_body(stream=True)
    writer.write((f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Request-Id: c{i}\r\n"
                  f"x-fake-inter-event-delay-ms: 100\r\nx-fake-tokens: 5\r\n"
                  f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
    await writer.drain()
    data = await reader.read()
    writer.close()
    return data


def test_500_concurrent_streams(gateway, fake):
    async def main():
        return await asyncio.wait_for(asyncio.gather(*(one_stream(gateway.port, i) for i in range(500))), 60)
    results = asyncio.run(main())
    ok = sum(1 for r in results if r.startswith(b"HTTP/1.1 200") and b"data: [DONE]" in r and r.endswith(b"0\r\n\r\n"))
    assert ok == 500, f"{ok}/500 streams completed"
    assert gateway.proc.poll() is None
