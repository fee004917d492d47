import PortcullisCore
import PortcullisHTTP
import PortcullisConfig
import PortcullisPipeline
import PortcullisUpstream
import PortcullisRouter
import PortcullisAdapters

/// Runs the upstream attempts of one request and owns its response (the home of the response
/// path; the server connection keeps I/O, timers and lifecycle).
///
/// Decisions, all made while **nothing has gone to the client**:
/// - a failure before the response head (connect, TLS, reset, timeout — `UpstreamFailurePhase`
///   says which) → the next candidate of the `RoutePlan`;
/// - a response head whose status is in the plan's `retry_on` → its (small) body is held, not
///   forwarded; when it ends, the next candidate. If no candidate is left, the held response
///   (the last provider's own status and body) goes to the client;
/// - any other head → forwarded at once; from then on there is no retry: a failure ends the
///   response as `ResponseRelay.failAfterHead` says.
/// Candidates whose circuit breaker is open are skipped without paying their timeout. Attempts
/// are bounded by the plan's `max_attempts` and share the route's `total` deadline.
/// Plain routes (no plan) make exactly one attempt.
///
/// One per client connection, reused request after request; loop thread only.
public final class ProxyCoordinator: UpstreamResponseDelegate {
    /// The connection that owns this coordinator and outlives it: no strong reference (a
    /// checked `unowned` costs an atomic retain/release on every use, an `unowned(unsafe)` one
    /// a retain and release around every call), and called without either (`SinkRef`).
    let sink: SinkRef
    /// The sink's output buffer, fetched once (the sink keeps one for its life): reading it
    /// through the protocol returns it retained, several times per response. A strong `let`
    /// (no cycle: a buffer refers to nothing): a `let` of `self` is used without a retain,
    /// where an `unowned(unsafe)` one is retained at every use.
    let output: ByteBuffer
    let starter: UpstreamAttemptStarter
    let breakers: CircuitBreakers?
    let metrics: RouterMetrics?
    let now: () -> UInt64

    /// Held retryable responses larger than this are forwarded instead (no retry).
    static let maxHeldBody = 65536

    // Per request (reset by `start`).
    var context: RequestContext?
    var attempt: UpstreamAttempt?
    var attemptSerial = 0
    public private(set) var attempts = 0
    /// Per attempt: the provider asked and, when it failed, how (metrics by provider and kind).
    public private(set) var attemptLog: [(provider: ProviderConfiguration, failure: RouterMetrics.FailureKind?)] = []
    /// When the response head was queued for the client (0: not yet): time to first byte.
    public private(set) var firstByteAt: UInt64 = 0
    var nextCandidate = 0
    var deadline: UInt64 = 0
    /// The target and provider of the current (or last) attempt.
    public private(set) var target: ModelTarget?
    public private(set) var provider: ProviderConfiguration?
    var held: KeptResponse?
    var holding = false
    var lastFailure: GatewayError?
    var paused = false
    public private(set) var relay = ResponseRelay()
    /// Watches the final response for `usage` when the limiter wants it settled.
    /// (A `let`, made with the coordinator: a `let` of `self` is used without a retain, where an
    /// optional `var` is loaded and retained at each use.)
    let tap = UsageTap(hide: false)
    /// The current attempt's response translation (non-OpenAI providers), and a whole JSON
    /// answer being collected for it.
    var transform: AnthropicResponseTransform?
    var whole: KeptResponse?
    static let maxWholeBody = 8 << 20
    /// For the access log: "ok", "upstream_<label>", "stream_error_<label>", …
    public private(set) var outcome = "ok"
    public private(set) var finished = true

    public init(sink: ResponseSink, starter: UpstreamAttemptStarter, breakers: CircuitBreakers?, metrics: RouterMetrics?,
                now: @escaping () -> UInt64 = MonotonicClock.now) {
        self.sink = SinkRef(sink: sink); self.output = sink.output; self.starter = starter; self.breakers = breakers; self.metrics = metrics; self.now = now
    }

    /// Starts proxying `ctx` (its pipeline said `.proceed`).
    public func start(_ ctx: RequestContext) {
        context = ctx
        attempt = nil; attempts = 0; nextCandidate = 0; target = nil; provider = nil
        attemptLog.removeAll(keepingCapacity: true); firstByteAt = 0
        held = nil; holding = false; lastFailure = nil; paused = false
        relay = ResponseRelay(); outcome = "ok"; finished = false
        // Token counts for settlement, the log and metrics: the connection's tap, reset.
        tap.reset(hide: ctx.hideStreamUsage)
        let timeouts = ctx.route?.timeouts ?? RouteTimeouts()
        deadline = now() &+ timeouts.total.nanoseconds
        if ctx.plan == nil {
            guard let p = ctx.provider else { return respondLocal(.internalError("No provider was selected.")) }
            launch(ctx, provider: p, target: nil)
        } else {
            tryNext(ctx)
        }
    }

    func noteFailure(_ kind: RouterMetrics.FailureKind) {
        if let last = attemptLog.indices.last { attemptLog[last].failure = kind }
    }

    /// Prompt and completion tokens the provider reported (nil when it reported none).
    public var tokenCounts: (prompt: Int64?, completion: Int64?) { (tap.promptTokens, tap.completionTokens) }

    /// The model the provider said it served (nil when its response did not say).
    public var servedModel: String? { tap.model }

    /// Whether the response being relayed is an event stream.
    public var isStreaming: Bool { relay.headSent && relay.isSSE }

    /// The client went away: stop the attempt at once; nothing more is written.
    public func cancel() {
        if !finished { settle(responded: relay.headSent) }
        if let t = target, attempt != nil { breakers?.releaseProbe(t.index) }
        attempt?.cancel()
        attempt = nil
        finished = true
    }

    /// The connection is done with the request (logged and reset): drop what it held — its
    /// context (head, body, plan, reservation) and any kept response — so an idle keep-alive
    /// connection holds none of it and the parser can refill the request head in place.
    /// The provider, target and counts of the last attempt stay until the next `start`.
    public func requestEnded() {
        guard finished else { return }
        context = nil; held = nil; whole = nil; transform = nil
    }

    /// The client's buffer drained after `outputAppended()` returned false.
    public func clientDrained() {
        guard paused else { return }
        paused = false
        if let a = attempt, !a.isDone { a.resumeReading() }
    }

    // MARK: attempts

    /// Launches the next admitted candidate, or ends with the last failure.
    func tryNext() {
        // (The context unretained: this coordinator holds it until the request ends, and
        // neither `tryNext(_:)` nor `launch` reads it after a call that can end the request.)
        withUnretained(context) { ctx in
            guard let ctx else { return giveUp() }
            tryNext(ctx)
        }
    }

    func tryNext(_ ctx: RequestContext) {
        guard let plan = ctx.plan else { return giveUp() }
        let t = now()
        while nextCandidate < plan.candidates.count && attempts < plan.maxAttempts {
            let c = plan.candidates[nextCandidate]
            nextCandidate += 1
            if let b = breakers, !b.admit(c.index, now: t) { continue }
            return launch(ctx, provider: c.provider, target: c)
        }
        giveUp()
    }

    /// Whether another attempt could be made after the current one (without consuming breakers).
    func mayTryAnother() -> Bool {
        guard let plan = context?.plan, attempts < plan.maxAttempts else { return false }
        guard let b = breakers else { return nextCandidate < plan.candidates.count }
        let t = now()
        return plan.candidates[nextCandidate...].contains { b.wouldAdmit($0.index, now: t) }
    }

    /// Starts an attempt at `p` for `ctx` (the request this coordinator runs). Reads nothing of
    /// `ctx` after `startAttempt`, which may end the request at once (a synchronous failure).
    func launch(_ ctx: RequestContext, provider p: ProviderConfiguration, target t: ModelTarget?) {
        guard let route = ctx.route else { return }
        target = t; provider = p
        if attempts > 0 { metrics?.failover() }
        attempts += 1
        attemptLog.append((p, nil))
        if let t { metrics?.attempt(t.index) }
        transform = nil
        whole = nil
        let req: AdaptedRequest
        switch ProviderAdapters.adapter(for: p.kind).request(ctx, route: route, provider: p, target: t) {
        case .success(let r): req = r
        case .failure(.untranslatable(let why)):
            held = nil
            lastFailure = .badRequest(why)
            outcome = "untranslatable_request"
            return tryNext()
        case .failure(.missingCredential(let envName)):
            if let t { metrics?.failure(t.index, .credentials) }
            noteFailure(.credentials)
            held = nil
            lastFailure = .internalError("Provider '\(p.name)' has no API key: \(envName) is not set.")
            outcome = "upstream_no_credentials"
            return tryNext()
        }
        // A routed body the adapter forwards as it is, small and only its model rewritten (the
        // usual alias request), is written after the head in the same bytes: no body array of
        // its own, one allocation and copy fewer. Any other goes as its own bytes.
        var bodyBytes: [UInt8] = [], inlineCount = 0
        if req.body == nil, let t, let n = ctx.inPlaceBodyCount(for: t) {
            inlineCount = n
        } else {
            bodyBytes = req.body ?? ctx.body(for: t)
        }
        let headBytes = UpstreamRequestHead.serialize(
            method: ctx.head.method, basePath: p.baseURL.basePath, target: req.path,
            authority: p.baseURL.authority, headerLines: ctx.upstreamHeaderLines,
            identityLines: ctx.upstreamIdentityLines, providerLines: req.credential, extraLines: req.extra,
            bodyLength: inlineCount > 0 ? inlineCount : bodyBytes.count, bodyInline: inlineCount > 0) { dst in
            if let t { ctx.writeBody(for: t, to: dst) }
        }
        transform = req.transform
        attemptSerial += 1
        let serial = attemptSerial
        let a = starter.startAttempt(provider: p, timeouts: route.timeouts, method: ctx.head.method, head: headBytes,
                                     body: bodyBytes, deadline: deadline, delegate: self)
        // A synchronous failure may already have moved on to another attempt.
        if serial == attemptSerial && !a.isDone && !finished { attempt = a }
    }

    /// No candidate left: the held provider response, else the last failure, else "none available".
    func giveUp() {
        if let h = held, transform != nil {
            held = nil
            return forwardTranslated(h.head, h.body)     // the last attempt was a translating provider's
        }
        if let h = held {
            held = nil
            forwardHead(h.head)
            _ = h.body.withUnsafeBytes { forwardBody($0) }
            return finishResponse()
        }
        if let e = lastFailure { return respondLocal(e) }
        let alias = context?.plan?.alias ?? "-"
        outcome = "no_healthy_target"
        respondLocal(.overloaded("No provider is available for '\(alias)' now: every target's circuit breaker is open."))
    }

    func respondLocal(_ e: GatewayError) {
        settle(responded: false)
        finished = true
        attempt = nil
        sink.respondLocal(LocalResponse(e))
    }

    // MARK: the response

    func identityLines(_ ctx: RequestContext) -> [UInt8] {
        guard ctx.configuration.server.responseHeaders.contains(.provider) else { return [] }
        if let t = target { return t.responseHeaderLines }
        return provider?.responseHeaderLine ?? []
    }

    func forwardHead(_ h: HTTPResponseHead) {
        // (The context unretained: this coordinator holds it until the request ends.)
        withUnretained(context) { ctx in
            guard let ctx else { return }
            forwardHead(h, ctx)
        }
    }

    private func forwardHead(_ h: HTTPResponseHead, _ ctx: RequestContext) {
        let facts = RequestFacts(method: ctx.head.method, minorVersion: ctx.head.minorVersion,
                                 keepAlive: ctx.head.keepAlive && !sink.isDraining,
                                 requestID: ctx.configuration.server.responseHeaders.contains(.requestID) ? ctx.requestID : nil)
        relay.head(h, request: facts, identity: identityLines(ctx), extra: ctx.responseHeaderLines,
                   source: ctx.responseHeaderSource, into: output)
        tap.begin(sse: relay.isSSE)
        firstByteAt = now()
        outcome = h.status >= 400 ? "upstream_status" : "ok"   // the final answer decides
    }

    /// Returns false when the upstream should pause (the client is slower). `contentChunk`: the
    /// bytes are one content chunk the stream translator wrote on its fast path, which the tap
    /// counts without reading (`UsageTap.passContentChunk`).
    @discardableResult
    func forwardBody(_ bytes: UnsafeRawBufferPointer, contentChunk: Bool = false) -> Bool {
        if contentChunk && tap.passContentChunk() {
            relay.body(bytes, into: output)
        } else if tap.filters {
            tap.filter(bytes) { relay.body($0, into: output) }
        } else {
            relay.body(bytes, into: output)
            tap.observe(bytes)
        }
        if sink.outputAppended() { return true }
        paused = true
        return false
    }

    func finishResponse() {
        finishTap()
        settle(responded: true)
        finished = true
        attempt = nil
        relay.end(into: output)
        sink.responseQueued(keepAlive: relay.keepAlive)
    }

    // MARK: UpstreamResponseDelegate

    /// The end of the body for the usage tap: a stream's held-back events go out; a JSON
    /// answer is read without a closure (one capturing `self` retains it).
    func finishTap() {
        if tap.sse { tap.finish { relay.body($0, into: output) } } else { tap.finishJSON() }
    }

    /// A provider read was relayed: its bytes leave now (an SSE event does not wait for the
    /// other streams' reads of this loop iteration).
    public func upstreamReadEnded() {
        if !finished && !paused && relay.headSent { sink.flushQueued() }
    }

    public func upstreamDidReceiveHead(_ h: HTTPResponseHead) {
        guard !finished else { return }
        // Anthropic's 529 (overloaded) is its 503.
        let status = (transform != nil && h.status == 529) ? 503 : h.status
        let retryable = context?.plan?.retryOn.contains(status) ?? false
        if let t = target {
            if retryable {
                noteFailure(.status)
                metrics?.failure(t.index, .status)
                breakers?.recordFailure(t.index, now: now(), retryAfterNanos: h.status == 429 ? Self.retryAfterNanos(h) : nil)
            } else {
                breakers?.recordSuccess(t.index)
            }
        }
        if retryable && mayTryAnother() {
            holding = true
            held = KeptResponse(h)
            return
        }
        holding = false
        held = nil
        if let t = target, !retryable { metrics?.success(t.index) }
        if let tr = transform {
            if h.status == 200 && h.isEventStream { tr.streaming = true }
            else { whole = KeptResponse(h); return }    // JSON answers and errors: translated whole (1xx never arrive)
        }
        forwardHead(h)
        _ = sink.outputAppended()
    }

    public func upstreamDidReceiveBody(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard !finished else { return true }
        if let w = whole {
            guard w.body.count + bytes.count <= Self.maxWholeBody else {
                return upstreamTranslationFailed("The provider's answer is too large to translate.")
            }
            w.body.append(bytes: bytes)        // (in place: the kept body is not copied per read)
            return true
        }
        if let tr = transform, tr.streaming {
            var keepReading = true
            tr.feed(bytes) { out, content in out.withUnsafeBytes { if !forwardBody($0, contentChunk: content) { keepReading = false } } }
            return keepReading
        }
        if holding, let h = held {
            if h.body.count + bytes.count <= Self.maxHeldBody {
                h.body.append(bytes: bytes)
                return true
            }
            // Too large to hold: forward it after all (no retry of this one).
            holding = false
            held = nil
            forwardHead(h.head)
            h.body.withUnsafeBytes { _ = forwardBody($0) }
        }
        return forwardBody(bytes)
    }

    public func upstreamDidFinish() {
        guard !finished else { return }
        attempt = nil
        if let w = whole {
            whole = nil
            return forwardTranslated(w.head, w.body)
        }
        if let tr = transform, tr.streaming {
            tr.finish { out, content in out.withUnsafeBytes { _ = forwardBody($0, contentChunk: content) } }
        }
        if holding {
            holding = false
            outcome = "upstream_status"
            if let h = held { lastFailure = .upstreamBadResponse("Upstream answered \(h.head.status).") }
            return tryNext()
        }
        finishResponse()
    }

    /// A whole answer of a translating provider (JSON, or an error) in OpenAI's format.
    func forwardTranslated(_ head: HTTPResponseHead, _ body: [UInt8]) {
        var h = head
        let translated: [UInt8]?
        if h.status == 200 {
            translated = AnthropicResponseTransform.translateWhole(body)
        } else {
            // An Anthropic error in OpenAI's shape and status (529 overloaded → 503).
            translated = AnthropicResponseTransform.translateError(body, status: h.status)
            if h.status == 529 { h.status = 503; h.reason = "" }
        }
        guard let out = translated else {
            _ = upstreamTranslationFailed("The provider's answer could not be translated.")
            return
        }
        h.framing = .length(out.count)
        forwardHead(h)
        out.withUnsafeBytes { _ = forwardBody($0) }
        finishResponse()
    }

    public func upstreamDidFail(_ failure: UpstreamFailure, phase: UpstreamFailurePhase) {
        guard !finished else { return }
        attempt = nil
        noteFailure(Self.kind(failure))
        if let t = target {
            metrics?.failure(t.index, Self.kind(failure))
            breakers?.recordFailure(t.index, now: now())
        }
        Log.debug("request \(context?.requestID.description ?? "-"): upstream \(provider?.name ?? "-") failed \(phase.rawValue): \(failure.label)")
        if holding {
            // The held error response broke off: it is not forwarded; try on.
            holding = false
            held = nil
        }
        guard relay.headSent else {
            held = nil   // the last attempt's answer is what the client gets
            lastFailure = failure.gatewayError
            outcome = "upstream_" + failure.label
            return tryNext()
        }
        outcome = "stream_error_" + failure.label
        finishTap()
        settle(responded: true)
        relay.failAfterHead(failure.gatewayError, anthropicShape: context?.callsAnthropicAPI ?? false, into: output)
        finished = true
        sink.responseQueued(keepAlive: relay.keepAlive)
    }

    /// A translated answer cannot be delivered (nothing was sent yet): 502.
    private func upstreamTranslationFailed(_ why: String) -> Bool {
        attempt?.cancel()
        attempt = nil
        whole = nil
        outcome = "untranslatable_response"
        respondLocal(.upstreamBadResponse(why))
        return false
    }

    /// Tells the limiter what the request used (the settlement counts only its first call): the
    /// provider's `usage` when it came, else an estimate from what was streamed; nothing when no
    /// response came at all.
    func settle(responded: Bool) {
        context?.settlement?.settle(usage: tap.usage, streamedEvents: tap.contentEvents, responded: responded)
    }

    static func kind(_ f: UpstreamFailure) -> RouterMetrics.FailureKind {
        switch f {
        case .connectFailed: .connect
        case .tls: .tls
        case .reset: .reset
        case .timeout: .timeout
        case .badResponse: .badResponse
        }
    }

    /// `Retry-After` in seconds (the delta-seconds form; an HTTP-date is ignored).
    static func retryAfterNanos(_ h: HTTPResponseHead) -> UInt64? {
        guard let v = h.first("retry-after"), let s = DecimalDigits.value(v.utf8, maxDigits: 9) else { return nil }
        return UInt64(s) * 1_000_000_000
    }
}

/// A provider response kept back instead of forwarded: an error held while another candidate
/// may answer, or a whole answer collected for translation. Its body grows in place.
final class KeptResponse {
    let head: HTTPResponseHead
    var body: [UInt8] = []
    init(_ head: HTTPResponseHead) { self.head = head }
}
