import CLinux
import PortcullisCore
import PortcullisHTTP
import PortcullisPipeline
import PortcullisConfig
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
    /// This response is counted in the open-streams gauge.
    var streamCounted = false
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
        loop.cancel(timer)
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
        if let c = context, c.configuration.server.responseHeaders.contains(.requestID) {
            out.append(StatusLine.requestID); out.append(c.requestID); out.append(StatusLine.crlf)
        }
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
        if !response.streamCounted, coordinator?.isStreaming == true {
            response.streamCounted = true
            metrics.update { $0.openStreams += 1 }
        }
        if output.readableBytes >= HTTPServerConnection.outputHighWater {
            flush()
            if phase != .proxying { return false }
            if output.readableBytes >= HTTPServerConnection.outputLowWater {
                response.upstreamPaused = true
                armSlowReaderTimer()
                return false
            }
            return true
        }
        scheduleFlush()
        return true
    }

    func flushQueued() {
        guard phase == .proxying, flushScheduled, !response.upstreamPaused else { return }
        flush()
    }

    /// The last bytes leave with the worker's batch of completed responses, not now
    /// (`Worker.responseCompleted`): the clients, woken once, each find theirs with the others'.
    /// Under load that saved 4–9 % of the proxy's CPU per request and more of the client's. A
    /// stream's last event leaves at once, as its others did after each provider read
    /// (`flushQueued`). (Held for the batch, the end of each stream was the only SSE byte that
    /// waited; in four of five paired SSE runs the batching binaries read 0.1–0.3 ms more
    /// per-event p99.)
    func responseQueued(keepAlive: Bool) {
        guard phase == .proxying else { return }
        response.complete = true
        response.keepAlive = keepAlive && !worker.draining
        if response.streamCounted { return flush() }
        flushScheduled = true           // the worker's batch writes it (no deferred task of our own)
        worker.responseCompleted(self)
    }

    /// The worker's batch write: a no-op when the connection closed or already wrote it.
    func flushCompletedResponse() {
        guard phase != .closed, flushScheduled, response.complete else { return }
        flush()
    }

    var isDraining: Bool { worker.draining }

    // MARK: proxying

    func startProxy(_ ctx: RequestContext) {
        phase = .proxying
        response.proxied = true
        let c: ProxyCoordinator
        if let existing = coordinator, coordinatorGeneration === generation { c = existing } else {
            let loop = self.loop            // (outlives every connection of its worker)
            c = ProxyCoordinator(sink: self, starter: worker.upstream, breakers: generation.breakers, metrics: generation.routerMetrics,
                                 now: { [unowned(unsafe) loop] in loop.now })
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

    /// Bounded output: while the provider waits on a full buffer, the client gets the route's
    /// `idle` timeout to take some of it (re-armed on every write that makes progress); then
    /// `timerFired` cuts it.
    func armSlowReaderTimer() {
        loop.arm(timer, after: (context?.route?.timeouts.idle ?? RouteTimeouts().idle).nanoseconds)
    }

    /// Takes this response out of the open-streams gauge (once; on its end or on close).
    func uncountStream() {
        guard response.streamCounted else { return }
        response.streamCounted = false
        metrics.update { $0.openStreams -= 1 }
    }

    func resetRequest() {
        releaseReservation()
        uncountStream()
        head = nil
        coordinator?.requestEnded()
        body = []
        bodyRemaining = 0
        requestStart = 0
        context = nil
        suspended = nil
        response = ResponseState()
    }

    /// Reports the finished request: its metrics, and its access line when the log is on.
    func logAccess(status: Int, outcome: String) {
        // Metrics need the route, tenant, status, outcome, timings, model, token counts and
        // attempts; the rest is gathered only for an access log line. Without one, the values
        // go to the metrics as they are: no summary, no string copied.
        // (The generation and the coordinator unretained: the connection holds both until the
        // request is reset, after this.)
        withUnretained(generation) { g in
            withUnretained(response.proxied ? coordinator : nil) { c in logAccess(status: status, outcome: outcome, g, c) }
        }
    }

    private func logAccess(status: Int, outcome: String, _ g: WorkerGeneration, _ c: ProxyCoordinator?) {
        let duration = requestStart == 0 ? 0 : loop.now &- requestStart   // (the loop's clock, as nginx's $request_time)
        let (kind, detail) = RequestOutcome.classify(outcome, status: status)
        var model = c?.target?.model
        let (prompt, completion) = c?.tokenCounts ?? (nil, nil)
        if model == nil, prompt != nil || completion != nil { model = c?.servedModel }
        var ttfb: UInt64?
        if let c, c.firstByteAt != 0 && requestStart != 0 { ttfb = c.firstByteAt &- requestStart }
        metrics.record(routeIndex: context?.route?.index, status: status, outcome: kind, durationNanos: duration, ttfbNanos: ttfb,
                       tenant: context?.tenant, model: model, promptTokens: prompt, completionTokens: completion,
                       attempts: c?.attemptLog ?? [], tables: g.metricsTables,
                       tenantLabels: g.configuration.metrics.tenantLabels)
        guard g.configuration.log.access else { return }
        var r = RequestSummary()
        r.durationNanos = duration
        r.route = context?.route
        r.tenant = context?.tenant
        r.status = status
        (r.outcome, r.detail) = (kind, detail)
        r.requestID = context?.requestID.description ?? "-"
        r.client = peer
        r.method = head?.method ?? "-"
        if let p = context?.path ?? head?.path {                  // (neither has the query)
            r.path = p.utf8.count <= 256 ? p : String(decoding: p.utf8.prefix(256), as: UTF8.self)
        }
        r.user = context?.user
        r.bytes = response.localBytes
        if let c {
            if c.relay.headSent { r.bytes = c.relay.bodyBytes }
            r.provider = c.provider?.name
            r.alias = context?.plan?.alias
            r.attempts = c.attemptLog
        }
        r.model = model
        (r.promptTokens, r.completionTokens) = (prompt, completion)
        r.ttfbNanos = ttfb
        worker.queueAccessLine(r, format: g.configuration.log.format)
    }

}
