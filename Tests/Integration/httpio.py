"""A tiny HTTP/1.1 response reader over a raw socket that timestamps every body byte it gets,
so tests can tell when each SSE event left the gateway (no client-side buffering in the way)."""
import socket
import time
import weakref

# Bytes read past the end of a response (the start of the next pipelined one), per socket.
_leftover = weakref.WeakKeyDictionary()


class RawResponse:
    def __init__(self, status, headers, body, events, complete):
        self.status = status
        self.headers = headers          # dict, lowercased names (last value wins)
        self.body = body                # de-chunked body bytes
        self.events = events            # [(monotonic time, bytes)] per received body piece
        self.complete = complete        # framing ended cleanly (terminating chunk / full length)


def read_response(sock, deadline=10.0, on_first_body=None):
    buf = _leftover.pop(sock, b"")
    end = time.monotonic() + deadline
    sock.settimeout(0.5)

    def more():
        nonlocal buf
        while time.monotonic() < end:
            try:
                b = sock.recv(65536)
            except socket.timeout:
                continue
            if not b:
                return False
            buf += b
            return True
        raise TimeoutError("response not complete before the deadline")

    while b"\r\n\r\n" not in buf:
        if not more():
            raise ConnectionError("closed before the response head")
    head, buf = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for l in lines[1:]:
        k, v = l.split(":", 1)
        headers[k.strip().lower()] = v.strip()
    body = b""
    events = []
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            while b"\r\n" not in buf:
                if not more():
                    return RawResponse(status, headers, body, events, False)
            size_line, rest = buf.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            buf = rest
            if size == 0:
                while not buf.startswith(b"\r\n") and b"\r\n\r\n" not in buf:
                    if not more():
                        return RawResponse(status, headers, body, events, False)
                # Trailer section ends at the first empty line; keep what follows.
                end = 2 if buf.startswith(b"\r\n") else buf.index(b"\r\n\r\n") + 4
                _leftover[sock] = buf[end:]
                return RawResponse(status, headers, body, events, True)
            while len(buf) < size + 2:
                if not more():
                    return RawResponse(status, headers, body, events, False)
            piece = buf[:size]
            buf = buf[size + 2:]
            body += piece
            events.append((time.monotonic(), piece))
            if on_first_body and len(events) == 1:
                on_first_body()
    elif "content-length" in headers:
        n = int(headers["content-length"])
        while len(buf) < n:
            if not more():
                return RawResponse(status, headers, buf, events, False)
        _leftover[sock] = buf[n:]
        return RawResponse(status, headers, buf[:n], events, True)
    else:
        while more():
            pass
        return RawResponse(status, headers, buf, events, True)


def post(port, path, body, headers=None, sock=None, deadline=10.0):
    """POST over a (new or given) connection and read the whole response."""
    own = sock is None
    s = sock or socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        h = {"Host": f"127.0.0.1:{port}", "Content-Type": "application/json", "Content-Length": str(len(body))}
        h.update(headers or {})
        req = f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n"
        s.sendall(req.encode() + body)
        return read_response(s, deadline=deadline)
    finally:
        if own:
            s.close()


def sse_data(body):
    """The `data:` payloads of an SSE body, in order, plus (event, data) pairs of named events."""
    out = []
    for block in body.decode().split("\n\n"):
        event, data = None, []
        for line in block.split("\n"):
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        if data:
            out.append((event, "\n".join(data)))
    return out
