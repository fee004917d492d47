import CLinux
import PortcullisCore
import PortcullisHTTP
import PortcullisPipeline
import PortcullisProxy
#if canImport(Glibc)
import Glibc
#endif

/// The connection's side of one response. Reset for every request. What a proxied response
/// contains is the `ProxyCoordinator`'s business; the connection only knows when it is queued.
struct ResponseState {
    /// Status of a local response (proxied ones: the coordinator's relay).
    var status = 0
    var localBytes = 0
    var proxied = false
    /// Every byte of the response is queued; the request ends when `output` drains.
    var complete = false
    var keepAlive = true
    /// The coordinator was told to pause its upstream (the client is slow).
    var upstreamPaused = false
    var outcome = "ok"
}

extension HTTPServerConnection: ResponseSink {
    // MARK: local replies

    /// Queues a gateway-made response and ends the request when it is written.
    func respondLocal(_ r: LocalResponse, method: String, target: String, forceClose: Bool) {
        if phase == .closed { return }
        var r = r
        if let e = r.error, context?.callsAnthropicAPI == true {
            r.body = ClientAPIErrors.anthropicBody(e)     // the client called Anthropic's API
        }
        worker.loop.cancel(timer)
        phase = .processing
        response.proxied = false
        response.status = r.status
        response.localBytes = r.body.count
        response.keepAlive = (head?.keepAlive ?? false) && !forceClose && !r.closeConnection && !readClosed && !worker.draining
        if r.status >= 400 && response.outcome == "ok" { response.outcome = context?.limitOutcome ?? coordinatorOutcome ?? "local_error" }
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

    /// The coordinator's outcome when a proxied request ends in a local error (all attempts failed).
    private var coordinatorOutcome: String? {
        guard phase == .proxying || response.proxied, let c = coordinator, c.outcome != "ok" else { return nil }
        return c.outcome
    }

    // MARK: ResponseSink (the proxy coordinator writes the response through these)

    func respondLocal(_ r: LocalResponse) {
        guard let h = head else { return }
        respondLocal(r, method: h.method, target: h.target, forceClose: false)
    }

    func outputAppended() -> Bool {
        guard phase == .proxying else { return false }
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

    func responseQueued(keepAlive: Bool) {
        guard phase == .proxying else { return }
        response.complete = true
        response.keepAlive = keepAlive && !worker.draining
        flush()
    }

    var isDraining: Bool { worker.draining }

    // MARK: proxying

    func startProxy(_ ctx: RequestContext) {
        phase = .proxying
        response.proxied = true
        let c: ProxyCoordinator
        if let existing = coordinator, coordinatorGeneration === generation { c = existing } else {
            c = ProxyCoordinator(sink: self, starter: worker.upstream, breakers: generation.breakers, metrics: generation.routerMetrics)
            coordinator = c
            coordinatorGeneration = generation
        }
        c.start(ctx)
    }

    // MARK: finishing

    /// Called once the whole response has been written.
    func finishResponse() {
        guard response.complete, phase != .closed else { return }
        let status = responseStatus
        worker.process.metrics.countResponse(status: status)
        if response.proxied, let c = coordinator {
            if c.failedAttempts > 0 { worker.process.metrics.upstreamFailures.add(c.failedAttempts, ordering: .relaxed) }
            if c.outcome.hasPrefix("stream_error") { worker.process.metrics.streamErrors.add(1, ordering: .relaxed) }
        }
        logAccess(status: status, outcome: responseOutcome)
        requestsServed += 1
        let keep = response.keepAlive && !readClosed && !worker.draining
            && requestsServed < generation.configuration.server.maxRequestsPerConnection
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

    /// Whatever ended the request (a stage after the limiter refused it, the client left while
    /// it was suspended, …), the limiter's reservation is settled and its slot released. A no-op
    /// when the proxy coordinator already settled it.
    func releaseReservation() {
        context?.settlement?.settle(usage: nil, streamedEvents: 0, responded: false)
    }

    var responseStatus: Int {
        if response.proxied, let c = coordinator, c.relay.headSent { return c.relay.status }
        return response.status
    }

    var responseOutcome: String {
        if response.proxied, let c = coordinator, c.relay.headSent { return c.outcome }
        return response.outcome
    }

    func resetRequest() {
        releaseReservation()
        head = nil
        body = []
        bodyRemaining = 0
        requestStart = 0
        context = nil
        suspended = nil
        response = ResponseState()
    }

    func logAccess(status: Int, outcome: String) {
        guard generation.configuration.log.access else { return }
        let dur = requestStart == 0 ? 0 : (MonotonicClock.now() &- requestStart) / 1000
        let id = context?.requestID ?? "-"
        let method = head?.method ?? "-"
        let path = head.map { String(decoding: $0.path.utf8.prefix(256), as: UTF8.self) } ?? "-"
        var bytes = response.localBytes
        var routing = "upstream=-"
        if response.proxied, let c = coordinator {
            if c.relay.headSent { bytes = c.relay.bodyBytes }
            routing = "upstream=\(c.provider?.name ?? "-")"
            if let plan = context?.plan {
                routing += " alias=\(plan.alias) model=\(c.target?.model ?? "-") attempts=\(c.attempts)"
            }
        }
        worker.logAccess("ts=\(WallClock.nowMillis()) id=\(id) client=\(peer) method=\(method) path=\(path) status=\(status) bytes=\(bytes) dur_us=\(dur) \(routing) outcome=\(outcome)\n")
    }
}
