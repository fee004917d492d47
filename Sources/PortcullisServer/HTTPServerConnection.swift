import CLinux
import PortcullisCore
import PortcullisEventLoop
import PortcullisHTTP
import PortcullisConfig
import PortcullisPipeline
import PortcullisUpstream
import PortcullisProxy
#if canImport(Glibc)
import Glibc
#endif

/// One client connection: accept → parse → pipeline → upstream → stream back, in that order,
/// one request at a time (pipelined requests wait in `input` and are answered in order).
///
/// Ownership: the connection owns its fd (closes it in `close()`), its input and output
/// buffers, its timer and the in-flight `UpstreamExchange` (cancelled on close). The `Worker`
/// holds it in its connection table until `close()`. Every method runs on the worker's loop thread.
final class HTTPServerConnection: EventHandler, DeferredTask, PipelineCompletion {
    enum Phase { case readingHead, readingBody, processing, proxying, closed }

    let fd: Int32
    let worker: Worker
    /// The worker's loop (it outlives every connection on it), held directly: a `let` of `self`
    /// is used without a retain, where `worker.loop` loads and retains it.
    let loop: EventLoop
    /// The worker's metrics shard (it outlives every connection too), held directly for the same
    /// reason.
    let metrics: MetricsShard
    let peer: String
    let input = ByteBuffer(capacity: 4096)
    let output = ByteBuffer(capacity: 4096)
    let timer = LoopTimer({})
    var phase = Phase.readingHead
    /// The peer sent FIN (or the socket errored); we stop reading.
    var readClosed = false
    /// Reading was stopped because `input` is full; resume when it drains.
    var readPaused = false
    var flushScheduled = false
    var processScheduled = false
    var deferredQueued = false
    var requestsServed = 0

    // Per-request state (reset in `resetRequest`).
    var head: HTTPRequestHead?
    /// Where the parse of an incomplete head stopped (nothing is consumed from `input` until
    /// the head is complete, so its offsets stay valid).
    var headScan = HeadScanState()
    var body: [UInt8] = []
    var bodyRemaining = 0
    var bodyDecoder = ChunkedDecoder()
    var requestStart: UInt64 = 0
    var context: RequestContext?
    var suspended: PipelineResumer?
    /// Runs the upstream attempts and writes proxied responses (created on the first proxied
    /// request, reused for the connection's later ones).
    var coordinator: ProxyCoordinator?
    var response = ResponseState()
    /// The generation the current request runs on (taken from the worker when its first byte
    /// arrives; a reload affects only later requests).
    var generation: WorkerGeneration
    /// The generation `coordinator` was built for (its breakers and metrics).
    var coordinatorGeneration: WorkerGeneration?
    /// The client address counted against `max_connections_per_client` (released on close).
    var countedClient: String?

    static let inputHighWater = 65536
    static let outputHighWater = 65536
    static let outputLowWater = 16384

    init(fd: Int32, peer: SocketAddress, worker: Worker) {
        self.fd = fd
        self.worker = worker
        self.loop = worker.loop
        self.metrics = worker.metrics
        self.generation = worker.current
        self.peer = peer.ipString
        timer.setCallback { [unowned self] in self.timerFired() }
    }

    /// Between requests with nothing buffered: safe to close during a drain.
    var isIdle: Bool { phase == .readingHead && input.isEmpty && requestStart == 0 }

    func start() {
        armHeaderTimer()
        readAvailable()
        processInput()
    }

    // MARK: events

    func handleEvent(_ events: UInt32) {
        if phase == .closed { return }
        if events & (EPOLLERR.rawValue | EPOLLHUP.rawValue) != 0 {
            return abort("connection error")
        }
        if events & EPOLLOUT.rawValue != 0 && !output.isEmpty {
            flush()
            if phase == .closed { return }
        }
        if events & (EPOLLIN.rawValue | EPOLLRDHUP.rawValue) != 0 {
            readAvailable(peerHalfClosed: events & EPOLLRDHUP.rawValue != 0)
            if phase == .closed { return }
            if readClosed && (phase == .proxying || phase == .processing) {
                // A complete response waiting for its batch (`Worker.responseCompleted`) still
                // goes out (the client may only have half-closed); anything less is abandoned.
                if response.complete { return flush() }
                return abort("client closed the connection")
            }
            processInput()
        }
    }

    /// Reads until EAGAIN, EOF, or `input` reaches its cap (then pauses reading). A short read
    /// means the socket is drained (edge-triggered epoll reports the next arrival), which saves
    /// the EAGAIN read per request; after EPOLLRDHUP it reads on to see the EOF.
    func readAvailable(peerHalfClosed: Bool = false) {
        while !readClosed {
            if input.readableBytes >= HTTPServerConnection.inputHighWater { readPaused = true; return }
            input.reserve(4096)
            let want = input.writableBytes
            switch Syscall.read(fd, input.writePointer, want) {
            case .bytes(let n):
                input.commitWrite(n)
                if n < want && !peerHalfClosed { readPaused = false; return }
            case .wouldBlock: readPaused = false; return
            case .eof, .error: readClosed = true; return
            }
        }
    }

    // MARK: request reading

    func processInput() {
        while true {
            switch phase {
            case .readingHead:
                if input.isEmpty {
                    if readClosed { return close() }
                    return
                }
                if requestStart == 0 {
                    requestStart = loop.now
                    // (Stored only when a reload replaced it: a store retains and releases.)
                    if generation !== worker.current { generation = worker.current }
                    if requestsServed > 0 { armHeaderTimer() }
                }
                switch generation.requestParser.parse(input.readable, resuming: &headScan) {
                case .incomplete:
                    if readClosed { return close() }
                    return
                case .failure(let e):
                    headScan.nextHead()
                    return respondLocal(LocalResponse(e), method: "-", target: "-", forceClose: true)
                case .complete(let h, let consumed):
                    headScan.nextHead()
                    input.consume(consumed)
                    head = h
                    if !beginBody(h) { return }
                }
            case .readingBody:
                if !readBody() {
                    if phase == .closed || phase == .processing { return }
                    if readPaused {
                        // `input` was full: it has drained into the body, so read on (edge-triggered).
                        readAvailable()
                        if !input.isEmpty { continue }
                    }
                    if readClosed { return close() }
                    return
                }
                if phase == .closed { return }
                dispatch()
                return
            case .processing, .proxying, .closed:
                return
            }
        }
    }

    /// Prepares to read the body; returns false when it already answered (413).
    private func beginBody(_ h: HTTPRequestHead) -> Bool {
        body = []
        let limit = generation.configuration.server.maxBodyBytes
        switch h.framing {
        case .none, .untilClose:
            bodyRemaining = 0
        case .length(let n):
            if n > limit {
                respondLocal(LocalResponse(.payloadTooLarge(limit: limit)), method: h.method, target: h.target, forceClose: true)
                return false
            }
            bodyRemaining = n                   // (storage is sized by readBody's first bytes)
        case .chunked:
            bodyDecoder = ChunkedDecoder(maxBodyBytes: limit)
        }
        if h.expectContinue && input.isEmpty {
            output.append("HTTP/1.1 100 Continue\r\n\r\n")
            flush()
        }
        phase = .readingBody
        return true
    }

    /// Moves body bytes out of `input`; true when the body is complete.
    private func readBody() -> Bool {
        guard let h = head else { return false }
        switch h.framing {
        case .none, .untilClose:
            return true
        case .length:
            let take = min(bodyRemaining, input.readableBytes)
            if take > 0 {
                let bytes = UnsafeRawBufferPointer(rebasing: input.readable[0..<take])
                if body.isEmpty && take == bodyRemaining {
                    body = Array(bytes)                      // the whole body at hand: one exact copy
                } else {
                    if body.isEmpty { body.reserveCapacity(bodyRemaining) }
                    body.append(bytes: bytes)
                }
                input.consume(take)
                bodyRemaining -= take
            }
            return bodyRemaining == 0
        case .chunked:
            let limit = generation.configuration.server.maxBodyBytes
            var tooLarge = false
            let outcome = bodyDecoder.feed(input.readable) { slice in
                if body.count + slice.count > limit { tooLarge = true; return }
                body.append(bytes: slice)
            }
            if tooLarge {
                respondLocal(LocalResponse(.payloadTooLarge(limit: limit)), method: h.method, target: h.target, forceClose: true)
                return false
            }
            switch outcome {
            case .needMore: input.clear(); return false
            case .finished(let consumed): input.consume(consumed); return true
            case .tooLarge:
                respondLocal(LocalResponse(.payloadTooLarge(limit: limit)), method: h.method, target: h.target, forceClose: true)
                return false
            case .invalid(let m):
                respondLocal(LocalResponse(.badRequest("Malformed chunked body: \(m)")), method: h.method, target: h.target, forceClose: true)
                return false
            }
        }
    }

    // MARK: pipeline

    private func dispatch() {
        guard let h = head else { return }
        phase = .processing
        loop.cancel(timer)
        let given = h.first(.xRequestId) ?? ""
        let id = RequestIDGenerator.isValid(given) ? RequestID(given) : worker.requestIDs.make()
        let ctx = RequestContext(requestID: id, head: h, body: body, clientAddress: peer,
                                 startNanos: requestStart, configuration: generation.configuration)
        body = []
        context = ctx
        // The connection answers for itself (`PipelineCompletion`): no closure per request. It
        // is held strongly while the run lasts, on purpose: a `weak` reference gives the
        // connection a side table, which makes every retain and release of it take the slow
        // path for the rest of its life. The cycle (self → suspended → resumer → self) ends when
        // the pipeline completes, or when `close()` cancels the resumer.
        // (The pipeline unretained: `generation` owns it and is not replaced before the next
        // request's head.)
        suspended = generation.pipelineRef._withUnsafeGuaranteedRef { $0.run(ctx, handler: self) }
    }

    func pipelineFinished(_ ctx: RequestContext, _ outcome: Pipeline.Outcome) {
        guard phase == .processing, context === ctx else { return }   // a late answer for an old request
        suspended = nil
        switch outcome {
        case .respond(let r): respondLocal(r, method: ctx.head.method, target: ctx.head.target, forceClose: false)
        case .proceed: startProxy(ctx)
        }
    }

    // MARK: timers

    func armHeaderTimer() {
        loop.arm(timer, after: generation.configuration.server.headerTimeout.nanoseconds)
    }

    func armKeepaliveTimer() {
        loop.arm(timer, after: worker.configuration.server.keepaliveTimeout.nanoseconds)
    }

    private func timerFired() {
        switch phase {
        case .readingHead where input.isEmpty && requestStart == 0:
            close()  // keep-alive idle timeout: close quietly
        case .readingHead, .readingBody:
            respondLocal(LocalResponse(.requestTimeout), method: head?.method ?? "-", target: head?.target ?? "-", forceClose: true)
        case .proxying where response.upstreamPaused:
            // The client has not taken a byte of a full output buffer for the route's `idle`
            // timeout: a slow (or stuck) reader is cut; its provider connection goes with it.
            metrics.update { $0.slowClientsCut += 1 }
            abort("client too slow to read the response")
        default:
            break
        }
    }

    // MARK: output

    /// Writes as much of `output` as the socket takes. On the end of a response, moves on.
    func flush() {
        flushScheduled = false
        while !output.isEmpty {
            switch Syscall.write(fd, output.readPointer, output.readableBytes) {
            case .bytes(let n):
                output.consume(n)
                if response.upstreamPaused { armSlowReaderTimer() }   // progress: the idle clock restarts
            case .wouldBlock: return
            case .eof, .error: return abort("client write failed")
            }
        }
        if response.streamCounted {
            // A stream sits idle between events: it holds no buffer while it waits.
            output.release()
            input.release()
        } else {
            output.shrinkIfIdle(to: 16384)
        }
        if response.upstreamPaused {
            response.upstreamPaused = false
            loop.cancel(timer)
            coordinator?.clientDrained()
        }
        if response.complete { finishResponse() }
    }

    /// Flushes at the end of this loop iteration, so a head and body that arrive in one upstream
    /// read leave in one write.
    func scheduleFlush() {
        guard !flushScheduled else { return }
        flushScheduled = true
        if !deferredQueued { deferredQueued = true; loop.deferToEndOfIteration(self) }
    }

    /// Continues with pipelined input after this iteration (no deep recursion).
    func scheduleProcessInput() {
        processScheduled = true
        if !deferredQueued { deferredQueued = true; loop.deferToEndOfIteration(self) }
    }

    func runDeferredTask() {
        deferredQueued = false
        if phase == .closed { return }
        if flushScheduled { flush() }
        if processScheduled && phase == .readingHead {
            processScheduled = false
            if readPaused { readAvailable() }
            processInput()
        }
    }

    // MARK: close

    /// The client is gone or unusable mid-request: stop the upstream at once and close.
    func abort(_ why: String) {
        if phase == .closed { return }
        if phase == .proxying || phase == .processing {
            if phase == .proxying {
                let sent = coordinator?.relay.headSent == true
                logAccess(status: sent ? (coordinator?.relay.status ?? 499) : 499, outcome: "client_abort")
            }
        }
        close()
    }

    func close() {
        if phase == .closed { return }
        let wasProxying = phase == .proxying
        phase = .closed
        suspended?.cancel(); suspended = nil
        if wasProxying { coordinator?.cancel() }
        releaseReservation()
        uncountStream()
        loop.release(timer)
        loop.unregister(fd: fd)
        Syscall.close(fd)
        worker.connectionClosed(self)
    }
}
