import CLinux
import PortcullisCore
import PortcullisHTTP
import PortcullisPipeline
import PortcullisUpstream
#if canImport(Glibc)
import Glibc
#endif

/// The response half of one request. Reset for every request.
struct ResponseState {
    var status = 0
    var headSent = false
    /// Body bytes are chunk-framed towards the client.
    var chunked = false
    var noBody = false
    var isSSE = false
    /// Every byte of the response is queued; the request ends when `output` drains.
    var complete = false
    var keepAlive = true
    var bodyBytes = 0
    var upstreamPaused = false
    var outcome = "ok"
    var upstream = "-"
    /// The last two body bytes, to know whether an SSE event boundary was reached.
    var tail: (UInt8, UInt8) = (10, 10)
}

extension HTTPServerConnection {
    // MARK: local replies

    /// Queues a gateway-made response and ends the request when it is written.
    func respondLocal(_ r: LocalResponse, method: String, target: String, forceClose: Bool) {
        if phase == .closed { return }
        worker.loop.cancel(timer)
        phase = .processing
        response.status = r.status
        response.headSent = true
        response.keepAlive = (head?.keepAlive ?? false) && !forceClose && !r.closeConnection && !readClosed && !worker.draining
        if r.status >= 400 && response.outcome == "ok" { response.outcome = "local_error" }
        let out = output
        out.append(StatusLine.bytes(r.status, reason: ""))
        for (n, v) in r.headers { out.append(n); out.append(StatusLine.colonSpace); out.append(v); out.append(StatusLine.crlf) }
        out.append(StatusLine.contentLength); out.appendDecimal(r.body.count); out.append(StatusLine.crlf)
        if let id = context?.requestID { out.append(StatusLine.requestID); out.append(id); out.append(StatusLine.crlf) }
        if !response.keepAlive { out.append(StatusLine.connectionClose) }
        out.append(StatusLine.crlf)
        if method != "HEAD" { out.append(r.body) }
        response.complete = true
        flush()
    }

    // MARK: proxying

    func startProxy(_ ctx: RequestContext) {
        guard let route = ctx.route, let provider = ctx.provider else {
            return respondLocal(LocalResponse(.internalError("No route was selected.")), method: ctx.head.method, target: ctx.head.target, forceClose: false)
        }
        let headBytes = UpstreamRequestHead.serialize(
            method: ctx.head.method, basePath: provider.baseURL.basePath, target: ctx.target,
            authority: provider.baseURL.authority, headers: ctx.upstreamHeaders, bodyLength: ctx.body.count)
        phase = .proxying
        response.upstream = provider.name
        let x = worker.upstream.startExchange(provider: provider, timeouts: route.timeouts, method: ctx.head.method,
                                              head: headBytes, body: ctx.body, delegate: self)
        if !x.isDone && phase == .proxying { exchange = x }
    }

    // MARK: finishing

    /// Called once the whole response has been written.
    func finishResponse() {
        guard response.complete, phase != .closed else { return }
        GatewayMetrics.shared.countResponse(status: response.status)
        logAccess(status: response.status, outcome: response.outcome)
        requestsServed += 1
        let keep = response.keepAlive && !readClosed && !worker.draining
            && requestsServed < worker.configuration.server.maxRequestsPerConnection
        resetRequest()
        guard keep else {
            _ = shutdown(fd, Int32(SHUT_WR))
            return close()
        }
        phase = .readingHead
        if input.isEmpty && !readPaused {
            armKeepaliveTimer()
            return
        }
        armHeaderTimer()
        // Pipelined bytes are waiting: continue after this iteration (no deep recursion).
        scheduleProcessInput()
    }

    func resetRequest() {
        head = nil
        body = []
        bodyRemaining = 0
        requestStart = 0
        context = nil
        suspended = nil
        exchange = nil
        response = ResponseState()
    }

    func logAccess(status: Int, outcome: String) {
        guard worker.configuration.log.access else { return }
        let dur = requestStart == 0 ? 0 : (MonotonicClock.now() &- requestStart) / 1000
        let id = context?.requestID ?? "-"
        let method = head?.method ?? "-"
        let path = head.map { String(decoding: $0.path.utf8.prefix(256), as: UTF8.self) } ?? "-"
        worker.logAccess("ts=\(WallClock.nowMillis()) id=\(id) client=\(peer) method=\(method) path=\(path) status=\(status) bytes=\(response.bodyBytes) dur_us=\(dur) upstream=\(response.upstream) outcome=\(outcome)\n")
    }
}

// MARK: - streaming the upstream response

extension HTTPServerConnection: UpstreamResponseDelegate {
    func upstreamDidReceiveHead(_ h: HTTPResponseHead) {
        guard phase == .proxying, let req = head else { return }
        response.status = h.status
        response.headSent = true
        response.keepAlive = req.keepAlive && !worker.draining
        var connectionListed: [String] = []
        for f in h.fields {
            if f.known == .contentType { response.isSSE = h.valueHasPrefix(f, "text/event-stream") }
            if f.known == .connection {
                connectionListed += h.value(f).lowercasedCommaList()
            }
        }
        let out = output
        out.append(StatusLine.bytes(h.status, reason: h.reason))
        h.raw.withUnsafeBytes { raw in
            for f in h.fields {
                if f.known.isHopByHop || f.known == .contentLength || f.known == .xRequestId { continue }
                if response.isSSE && (f.known == .cacheControl || f.known == .xAccelBuffering) { continue }
                if !connectionListed.isEmpty && f.known == .other && connectionListed.contains(h.name(f)) { continue }
                // "Name: value" straight from the provider's bytes.
                out.append(UnsafeRawBufferPointer(rebasing: raw[Int(f.nameStart)..<Int(f.nameEnd)]))
                out.append(StatusLine.colonSpace)
                out.append(UnsafeRawBufferPointer(rebasing: raw[Int(f.valueStart)..<Int(f.valueEnd)]))
                out.append(StatusLine.crlf)
            }
        }
        if req.method == "HEAD" || h.status == 204 || h.status == 304 {
            response.noBody = true
            if case .length(let n) = h.framing { out.append("content-length: \(n)\r\n") }
        } else {
            switch h.framing {
            case .length(let n):
                out.append(StatusLine.contentLength); out.appendDecimal(n); out.append(StatusLine.crlf)
            case .none: out.append("content-length: 0\r\n")
            case .chunked, .untilClose:
                if req.minorVersion >= 1 { response.chunked = true; out.append(StatusLine.chunked) }
                else { response.keepAlive = false }
            }
        }
        if response.isSSE { out.append(StatusLine.sseHeaders) }
        if let id = context?.requestID { out.append(StatusLine.requestID); out.append(id); out.append(StatusLine.crlf) }
        if !response.keepAlive { out.append(StatusLine.connectionClose) }
        out.append(StatusLine.crlf)
        scheduleFlush()
    }

    func upstreamDidReceiveBody(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard phase == .proxying, !response.noBody, bytes.count > 0 else { return true }
        if response.chunked {
            output.appendHex(bytes.count)
            output.append("\r\n")
            output.append(bytes)
            output.append("\r\n")
        } else {
            output.append(bytes)
        }
        response.bodyBytes += bytes.count
        response.tail = bytes.count >= 2 ? (bytes[bytes.count - 2], bytes[bytes.count - 1]) : (response.tail.1, bytes[0])
        if output.readableBytes >= HTTPServerConnection.outputHighWater {
            flush()
            if phase != .proxying { return false }
            if output.readableBytes >= HTTPServerConnection.outputLowWater {
                response.upstreamPaused = true
                return false
            }
            return true
        }
        scheduleFlush()
        return true
    }

    func upstreamDidFinish() {
        guard phase == .proxying else { return }
        exchange = nil
        if response.chunked { output.append("0\r\n\r\n") }
        response.complete = true
        flush()
    }

    func upstreamDidFail(_ failure: UpstreamFailure, afterHead: Bool) {
        guard phase == .proxying, let req = head else { return }
        exchange = nil
        GatewayMetrics.shared.upstreamFailures.add(1, ordering: .relaxed)
        Log.debug("request \(context?.requestID ?? "-"): upstream \(response.upstream) failed: \(failure.label)")
        if !afterHead {
            response.outcome = "upstream_" + failure.label
            respondLocal(LocalResponse(failure.gatewayError), method: req.method, target: req.target, forceClose: false)
            return
        }
        GatewayMetrics.shared.streamErrors.add(1, ordering: .relaxed)
        response.outcome = "stream_error_" + failure.label
        if response.status < 400 { response.status = failure.gatewayError.status }
        if response.isSSE && response.chunked {
            // End the stream cleanly with an explicit error event (field-notes #10).
            let err = failure.gatewayError
            var event = (response.tail == (10, 10)) ? "" : "\n\n"
            event += "event: error\ndata: \(err.jsonBody)\n\n"
            let bytes = Array(event.utf8)
            output.appendHex(bytes.count); output.append("\r\n"); output.append(bytes); output.append("\r\n")
            output.append("0\r\n\r\n")
        } else {
            // No way to signal an error in-band: truncate, so the client cannot mistake it for success.
            response.keepAlive = false
        }
        response.complete = true
        flush()
    }
}


/// Prebuilt byte strings for response heads (no String formatting per response).
enum StatusLine {
    static let crlf: [UInt8] = [13, 10]
    static let colonSpace: [UInt8] = [58, 32]
    static let contentLength = Array("content-length: ".utf8)
    static let chunked = Array("transfer-encoding: chunked\r\n".utf8)
    static let sseHeaders = Array("cache-control: no-cache\r\nx-accel-buffering: no\r\n".utf8)
    static let requestID = Array("x-request-id: ".utf8)
    static let connectionClose = Array("connection: close\r\n".utf8)
    private static let common: [[UInt8]] = (0..<600).map { code in
        Array("HTTP/1.1 \(code) \(HTTPStatus.reason(code))\r\n".utf8)
    }

    /// "HTTP/1.1 <code> <reason>\r\n"; the standard reason unless the upstream gave its own.
    static func bytes(_ code: Int, reason: String) -> [UInt8] {
        if code >= 100 && code < 600 && (reason.isEmpty || reason == HTTPStatus.reason(code)) { return common[code] }
        let r = reason.isEmpty ? HTTPStatus.reason(code) : reason
        return Array("HTTP/1.1 \(code) \(r)\r\n".utf8)
    }
}
