import CLinux
import PortcullisCore
import PortcullisEventLoop
import PortcullisHTTP
#if canImport(Glibc)
import Glibc
#endif

/// One connection to the fake provider: reads a request, plays its `FakeScript`, repeats.
/// Notices the peer closing mid-response (counts it in `aborted_streams` with a timestamp) so
/// tests can check that the gateway hangs up on the provider when its client goes away.
final class FakeConnection: EventHandler {
    let fd: Int32
    let loop: EventLoop
    let defaults: FakeScript
    let input = ByteBuffer(capacity: 8192)
    let output = ByteBuffer(capacity: 8192)
    let parser = HTTPRequestParser(limits: HTTPParserLimits(maxHeaderBytes: 65536))
    var head: HTTPRequestHead?
    var body: [UInt8] = []
    var chunkDecoder = ChunkedDecoder()
    var busy = false
    var closed = false
    var streaming = false
    var closeAfter = false
    var timer: LoopTimer?
    var events: FakeEventStream?
    /// The request was to the Anthropic Messages endpoint (`…/v1/messages`).
    var anthropic = false
    /// Streaming stopped because the socket is full; EPOLLOUT resumes it.
    var waitingWritable = false
    var eventsSent = 0
    var script = FakeScript()
    var seq = 0

    init(fd: Int32, loop: EventLoop, defaults: FakeScript) {
        self.fd = fd; self.loop = loop; self.defaults = defaults
    }

    func handleEvent(_ events: UInt32) {
        if closed { return }
        if events & (EPOLLERR.rawValue | EPOLLHUP.rawValue) != 0 { return peerGone() }
        if events & EPOLLOUT.rawValue != 0 && !output.isEmpty { flush() }
        if closed { return }
        if waitingWritable && output.isEmpty { waitingWritable = false; nextEvent() }
        if closed { return }
        if events & (EPOLLIN.rawValue | EPOLLRDHUP.rawValue) != 0 {
            while true {
                input.reserve(8192)
                switch Syscall.read(fd, input.writePointer, input.writableBytes) {
                case .bytes(let n): input.commitWrite(n); continue
                case .wouldBlock: break
                case .eof, .error: return peerGone()
                }
                break
            }
            process()
        }
    }

    func peerGone() {
        if busy {
            FakeStats.shared.abortedStreams.add(1, ordering: .relaxed)
            FakeStats.shared.lastAbortMillis.store(Int(WallClock.nowMillis()), ordering: .relaxed)
        }
        close()
    }

    func close() {
        if closed { return }
        closed = true
        if let t = timer { loop.release(t) }
        if streaming { FakeStats.shared.activeStreams.subtract(1, ordering: .relaxed); streaming = false }
        loop.unregister(fd: fd)
        Syscall.close(fd)
    }

    func process() {
        while !busy && !closed {
            if head == nil {
                switch parser.parse(input.readable) {
                case .incomplete: return
                case .failure(let e):
                    respond(status: e.status, contentType: "application/json", body: OpenAIWire.error(status: e.status, message: e.message),
                            extra: "connection: close\r\n")
                    closeAfter = true
                    return
                case .complete(let h, let consumed):
                    input.consume(consumed)
                    head = h
                    body = []
                    chunkDecoder = ChunkedDecoder()
                }
            }
            guard let h = head else { return }
            switch h.framing {
            case .length(let n):
                let take = min(n - body.count, input.readableBytes)
                body.append(bytes: UnsafeRawBufferPointer(rebasing: input.readable[0..<take]))
                input.consume(take)
                if body.count < n { return }
            case .chunked:
                let r = chunkDecoder.feed(input.readable) { body.append(bytes: $0) }
                switch r {
                case .needMore: input.clear(); return
                case .finished(let c): input.consume(c)
                case .invalid, .tooLarge: close(); return
                }
            default: break
            }
            head = nil
            handle(h)
        }
    }

    func handle(_ h: HTTPRequestHead) {
        busy = true
        closeAfter = !h.keepAlive
        FakeStats.shared.requests.add(1, ordering: .relaxed)
        let path = h.path
        if path == "/_fake/stats" { return respond(status: 200, contentType: "application/json", body: FakeStats.shared.json()) }
        if path == "/_fake/reset" { FakeStats.shared.reset(); return respond(status: 200, contentType: "application/json", body: "{}") }
        if path == "/_fake/last-request" {
            return respond(status: 200, contentType: "application/json", body: FakeStats.shared.lastRequestJSON())
        }
        if path == "/healthz" { return respond(status: 200, contentType: "application/json", body: "{\"status\":\"ok\"}") }
        recordRequest(h)   // every request a gateway sent, so tests can check what escaped where
        FakeStats.shared.countPrefix(FakeScript.pathKnobs(path).map(String.init) ?? "")
        anthropic = path.hasSuffix("/v1/messages")
        guard anthropic || path.hasSuffix("/chat/completions") || path.hasSuffix("/completions") else {
            return respond(status: 404, contentType: "application/json", body: OpenAIWire.error(status: 404))
        }
        FakeStats.shared.chatRequests.add(1, ordering: .relaxed)
        script = FakeScript(defaults: defaults)
        script.apply(h, body: body)
        if script.close { closeAfter = true }
        if script.hangHead { return }  // never answer; the connection stays open
        if script.resetAfter == 0 { return reset() }
        if script.firstByteDelayMs > 0 {
            timer = loop.schedule(after: UInt64(script.firstByteDelayMs) * 1_000_000) { [weak self] in self?.answer() }
        } else {
            answer()
        }
    }

    func recordRequest(_ h: HTTPRequestHead) {
        let n = body.count
        FakeStats.shared.lastRequest.withLock { $0 = (h, n) }
    }

    func answer() {
        let created = WallClock.nowMillis() / 1000
        seq += 1
        let id = "chatcmpl-fake\(seq)"
        let prompt = max(1, body.count / 4)
        var received = "x-fake-received-bytes: \(body.count)\r\n" + (script.requestID.map { "x-request-id: \($0)\r\n" } ?? "")
        if !script.extraHeaderLines.isEmpty { received += script.extraHeaderLines }
        if script.status != 200 {
            let extra = script.status == 429 ? "retry-after: \(script.retryAfter)\r\n" + received : received
            let err = anthropic ? AnthropicWire.error(status: script.status) : OpenAIWire.error(status: script.status)
            return respond(status: script.status, contentType: "application/json", body: err, extra: extra)
        }
        if anthropic {
            let mid = "msg_fake\(seq)"
            if !script.stream {
                let answer = script.tool.map { AnthropicWire.toolMessage(id: mid, model: script.model, tool: $0, prompt: prompt) }
                    ?? AnthropicWire.message(id: mid, model: script.model, tokens: script.tokens, prompt: prompt)
                return respond(status: 200, contentType: "application/json", body: answer, extra: received)
            }
            if let tool = script.tool {
                self.events = AnthropicWire.ToolStream(id: mid, model: script.model, tool: tool, prompt: prompt)
            } else {
                self.events = AnthropicWire.EventStream(id: mid, model: script.model, tokens: script.tokens, prompt: prompt)
            }
            eventsSent = 0
            streaming = true
            FakeStats.shared.activeStreams.add(1, ordering: .relaxed)
            output.append("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ntransfer-encoding: chunked\r\n\(received)\(closeAfter ? "connection: close\r\n" : "")\r\n")
            return nextEvent()
        }
        if !script.stream {
            let json = OpenAIWire.completion(id: id, created: created, model: script.model, tokens: script.tokens, prompt: prompt)
            return respond(status: 200, contentType: "application/json", body: json, extra: received, chunked: script.chunked)
        }
        self.events = OpenAIWire.EventStream(id: id, created: created, model: script.model, tokens: script.tokens,
                                             prompt: prompt, includeUsage: script.includeUsage)
        eventsSent = 0
        streaming = true
        FakeStats.shared.activeStreams.add(1, ordering: .relaxed)
        output.append("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ntransfer-encoding: chunked\r\n\(received)\(closeAfter ? "connection: close\r\n" : "")\r\n")
        nextEvent()
    }

    /// Sends events until the stream ends, a delay is due, or the socket is full (then EPOLLOUT
    /// resumes it: the fake honours backpressure like a real provider).
    func nextEvent() {
        guard let stream = events else { return }
        while !closed {
            if let r = script.resetAfter, eventsSent >= r { flush(); return reset() }
            if let hang = script.hangAfter, eventsSent >= hang { flush(); return }
            if eventsSent >= stream.count {
                output.append("0\r\n\r\n")
                streaming = false
                events = nil
                FakeStats.shared.activeStreams.subtract(1, ordering: .relaxed)
                return finishResponse()
            }
            var ev = Array(stream.event(eventsSent).utf8)
            if script.stamp { ev = Array(": sent_ns=\(MonotonicClock.now())\n".utf8) + ev }
            eventsSent += 1
            output.appendHex(ev.count); output.append("\r\n"); output.append(ev); output.append("\r\n")
            if script.interEventDelayMs > 0 {
                flush()
                timer = loop.schedule(after: UInt64(script.interEventDelayMs) * 1_000_000) { [weak self] in self?.nextEvent() }
                return
            }
            if output.readableBytes >= 65536 {
                flush()
                if !output.isEmpty { waitingWritable = true; return }
            }
        }
    }

    func respond(status: Int, contentType: String, body: String, extra: String = "", chunked: Bool = false) {
        let b = Array(body.utf8)
        var h = "HTTP/1.1 \(status) \(HTTPStatus.reason(status))\r\ncontent-type: \(contentType)\r\n"
        h += chunked ? "transfer-encoding: chunked\r\n" : "content-length: \(b.count)\r\n"
        h += extra
        if closeAfter { h += "connection: close\r\n" }
        h += "\r\n"
        output.append(h)
        if chunked {
            let half = b.count / 2
            for part in [b[0..<half], b[half...]] where !part.isEmpty {
                output.appendHex(part.count); output.append("\r\n"); output.append(Array(part)); output.append("\r\n")
            }
            output.append("0\r\n\r\n")
        } else {
            output.append(b)
        }
        finishResponse()
    }

    func finishResponse() {
        busy = false
        flush()
        if closeAfter && !closed { _ = shutdown(fd, Int32(SHUT_WR)); close(); return }
        loop.deferToEndOfIteration { [weak self] in self?.process() }
    }

    func reset() {
        Syscall.setLingerZero(fd)
        busy = false
        close()
    }

    func flush() {
        while !output.isEmpty && !closed {
            switch Syscall.write(fd, output.readPointer, output.readableBytes) {
            case .bytes(let n): output.consume(n)
            case .wouldBlock: return
            case .eof, .error: return peerGone()
            }
        }
    }
}

final class FakeListener: EventHandler {
    let fd: Int32
    let loop: EventLoop
    let defaults: FakeScript
    var connections: [ObjectIdentifier: FakeConnection] = [:]

    init(fd: Int32, loop: EventLoop, defaults: FakeScript) { self.fd = fd; self.loop = loop; self.defaults = defaults }

    func handleEvent(_ events: UInt32) {
        while true {
            switch Sockets.accept(fd) {
            case .accepted(let cfd, _):
                Syscall.setNoDelay(cfd)
                FakeStats.shared.connections.add(1, ordering: .relaxed)
                let c = FakeConnection(fd: cfd, loop: loop, defaults: defaults)
                do { try loop.register(fd: cfd, handler: c) } catch { Syscall.close(cfd); continue }
                connections[ObjectIdentifier(c)] = c
                c.handleEvent(EPOLLIN.rawValue)
                if connections.count > 256 { connections = connections.filter { !$0.value.closed } }
            case .wouldBlock, .failed:
                return
            }
        }
    }
}
