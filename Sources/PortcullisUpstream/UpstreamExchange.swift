import CLinux
import PortcullisCore
import PortcullisEventLoop
import PortcullisHTTP
import PortcullisConfig
#if canImport(Glibc)
import Glibc
#endif

/// One request to a provider and its streamed response (nginx `ngx_http_upstream` with
/// `proxy_buffering off`). Owned by the server-side request that started it; loop thread only.
///
/// Invariants: the delegate hears exactly one of `upstreamDidFinish` / `upstreamDidFail`, unless
/// the owner calls `cancel()` first (then it hears nothing). The connection goes back to the
/// pool only after a complete, well-framed response; every other end closes it, and `cancel()`
/// and timeouts close it with RST so the provider stops generating at once.
public final class UpstreamExchange: UpstreamConnectionOwner, UpstreamAttempt {
    enum State { case idle, connecting, handshaking, sending, awaitingHead, streamingBody, done }

    let client: UpstreamClient
    let provider: ProviderConfiguration
    let timeouts: RouteTimeouts
    let method: String
    let head: [UInt8]
    let body: [UInt8]
    /// The coordinator that owns this exchange and outlives it; `cancel()` and every end of the
    /// exchange clear it. Unretained (`DelegateRef`), not `weak`: a weak reference gives the
    /// delegate a side table, and every retain and release of it then takes the slow path.
    var delegate: DelegateRef?

    var state = State.idle
    var conn: UpstreamConnection?
    var reused = false
    var retried = false
    var sent = 0
    /// Some of the request reached the socket (on this or an earlier, retried connection).
    var wrote = false
    var received = 0
    var paused = false
    var responseHead: HTTPResponseHead?
    var framing = BodyFraming.none
    var remaining = 0
    var chunked = ChunkedDecoder()
    var phaseDeadline: UInt64 = 0
    var phaseKind = UpstreamTimeoutKind.connect
    var totalDeadline: UInt64 = 0
    let parser = HTTPResponseParser()

    /// The request's overall deadline (monotonic ns); 0: the route's `total` from now.
    let deadline: UInt64

    init(client: UpstreamClient, provider: ProviderConfiguration, timeouts: RouteTimeouts,
         method: String, head: [UInt8], body: [UInt8], deadline: UInt64 = 0, delegate: UpstreamResponseDelegate) {
        self.client = client; self.provider = provider; self.timeouts = timeouts
        self.method = method; self.head = head; self.body = body; self.delegate = DelegateRef(delegate: delegate)
        self.deadline = deadline
    }

    public var isDone: Bool { state == .done }

    func start() {
        totalDeadline = deadline != 0 ? deadline : client.loop.now &+ timeouts.total.nanoseconds
        if let c = client.pool.checkout(client.poolKey(provider)) {
            conn = c; c.owner = self; reused = true
            startSending()
        } else {
            connectFresh()
        }
    }

    // MARK: connect

    private func connectFresh() {
        let url = provider.baseURL
        guard let addr = client.resolver.lookup(host: url.host, port: url.port) else {
            return fail(.connectFailed("cannot resolve \(url.host)"))
        }
        let fd: Int32
        var connectedNow = false
        switch Sockets.connect(to: addr) {
        case .failed(let e): return fail(.connectFailed("\(addr): \(Syscall.errorString(e))"))
        case .inProgress(let f): fd = f
        case .connected(let f): fd = f; connectedNow = true
        }
        var transport = Transport.plain(fd: fd)
        if url.tls {
            guard let ctx = client.tlsContext(for: provider), let ssl = ctx.makeSSL(fd: fd, host: url.host) else {
                Syscall.close(fd)
                return fail(.tls("TLS set-up failed"))
            }
            transport = .tls(fd: fd, ssl: ssl)
        }
        let c = UpstreamConnection(loop: client.loop, poolKey: client.poolKey(provider), transport: transport)
        do { try client.loop.register(fd: fd, handler: c) } catch {
            transport.free(); Syscall.close(fd)
            return fail(.connectFailed("cannot register socket"))
        }
        c.owner = self
        conn = c
        state = .connecting
        setPhase(.connect, timeouts.connect)
        if connectedNow { onConnected() }
    }

    private func onConnected() {
        guard let c = conn else { return }
        if case .tls = c.transport { state = .handshaking; handshake() } else { startSending() }
    }

    private func handshake() {
        guard let c = conn else { return }
        switch c.transport.handshake() {
        case .done: startSending()
        case .wantIO: return
        case .failed(let m): fail(.tls(m))
        }
    }

    // MARK: send

    private func startSending() {
        state = .sending
        sent = 0
        setPhase(.firstByte, timeouts.firstByte)
        send()
    }

    /// Requests up to one TLS record's plaintext go out as one `SSL_write` (`send`).
    static let joinedTLSWrite = 16384

    private func send() {
        guard let c = conn else { return }
        let total = head.count + body.count
        while sent < total {
            let r: IOResult
            if case .plain(let fd) = c.transport, sent < head.count, !body.isEmpty {
                r = head.withUnsafeBytes { h in body.withUnsafeBytes { b in
                    Sockets.send2(fd, UnsafeRawBufferPointer(rebasing: h[sent...]), b)
                } }
            } else if case .tls = c.transport, !body.isEmpty, total <= Self.joinedTLSWrite {
                // Head and body in one TLS record and one syscall, not two of each: joined in a
                // scratch copy (the same bytes for a write repeated after WANT_WRITE, as
                // SSL_write requires; the exchange always takes this path or never).
                r = withUnsafeTemporaryAllocation(of: UInt8.self, capacity: total - sent) { scratch in
                    let out = UnsafeMutableRawBufferPointer(scratch)
                    guard let p = out.baseAddress else { return .error(EINVAL) }
                    let n = max(0, head.count - sent)
                    if n > 0 {
                        head.withUnsafeBytes { out.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[sent...])) }
                    }
                    let off = max(0, sent - head.count)
                    body.withUnsafeBytes {
                        UnsafeMutableRawBufferPointer(rebasing: out[n...]).copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[off...]))
                    }
                    return c.transport.write(p, total - sent)
                }
            } else if sent < head.count {
                r = head.withUnsafeBytes { h in
                    guard let p = h.baseAddress else { return .error(EINVAL) }
                    return c.transport.write(p + sent, head.count - sent)
                }
            } else {
                let off = sent - head.count
                r = body.withUnsafeBytes { b in
                    guard let p = b.baseAddress else { return .error(EINVAL) }
                    return c.transport.write(p + off, body.count - off)
                }
            }
            switch r {
            case .bytes(let n): sent += n; wrote = true
            case .wouldBlock: return
            case .eof, .error: return connectionLost("the connection closed while sending the request")
            }
        }
        // The response is read when epoll reports it: a read right after sending would only
        // cost an EAGAIN syscall per request.
        state = .awaitingHead
    }

    // MARK: events

    func connectionEvent(_ events: UInt32, on c: UpstreamConnection) {
        switch state {
        case .idle, .done:
            return
        case .connecting:
            let err = conn.map { Sockets.pendingError($0.fd) } ?? ECONNREFUSED
            if err != 0 { return fail(.connectFailed("\(provider.baseURL.authority): \(Syscall.errorString(err))")) }
            if events & (EPOLLOUT.rawValue | EPOLLIN.rawValue) != 0 { onConnected() }
        case .handshaking:
            handshake()
        case .sending:
            send()
        case .awaitingHead, .streamingBody:
            if events & (EPOLLRDHUP.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0 { peerHalfClosed = true }
            if paused { return }
            readResponse(c)
        }
    }

    // MARK: receive

    private var peerHalfClosed = false

    /// Reads and delivers the response from `c`, this exchange's connection: the caller holds
    /// it for the call (the loop, whose event it is, or `conn`), and it stays alive to the end
    /// of the loop iteration even when the exchange lets it go meanwhile (checked into the pool,
    /// or closed: the loop keeps an unregistered handler until the iteration ends).
    private func readResponse(_ c: UpstreamConnection) {
        while state == .awaitingHead || state == .streamingBody {
            guard conn === c else { return }
            if paused { return }
            let buffer = c.readBuffer
            if state == .awaitingHead { buffer.reserve(4096) } else if buffer.writableBytes < 2048 { buffer.reserve(2048) }
            let want = buffer.writableBytes
            let r = c.transport.read(buffer.writePointer, want)
            switch r {
            case .bytes(let n):
                buffer.commitWrite(n)
                received += n
                if state == .streamingBody { setPhase(.idle, timeouts.idle) }
                processBuffered(c)
                if state == .streamingBody && !paused { delegate?.upstreamReadEnded() }
                // Plain TCP: a short read drained the socket (edge-triggered: the next arrival
                // is reported). TLS may hold decrypted bytes, so it reads on to EAGAIN.
                if n < want, case .plain = c.transport, !peerHalfClosed {
                    // Drained, and the body goes on (a stream between events): hold no buffer
                    // while waiting. A response that ended in this read keeps it for the pool.
                    if state == .streamingBody { buffer.release() }
                    return
                }
            case .wouldBlock:
                if state == .streamingBody { buffer.release() }
                return
            case .eof:
                if state == .streamingBody && framing == .untilClose { return finish(reusable: false) }
                return connectionLost(state == .awaitingHead ? "closed before sending a response" : "closed in the middle of the response body")
            case .error(let e):
                return connectionLost(Syscall.errorString(e))
            }
        }
    }

    /// Parses and delivers what `c`'s read buffer holds (its head into `c`'s head storage).
    private func processBuffered(_ c: UpstreamConnection) {
        let buffer = c.readBuffer
        if state == .awaitingHead {
            while true {
                switch parser.parse(buffer.readable, requestMethod: method, storage: &c.headStorage) {
                case .incomplete:
                    return
                case .failure(let e):
                    return fail(.badResponse(e.message))
                case .complete(let h, let consumed):
                    buffer.consume(consumed)
                    if h.status >= 100 && h.status < 200 { continue }  // 100 Continue, 103 Early Hints
                    responseHead = h
                    framing = h.framing
                    if case .length(let n) = framing { remaining = n }
                    state = .streamingBody
                    setPhase(.idle, timeouts.idle)
                    delegate?.upstreamDidReceiveHead(h)
                    if state != .streamingBody { return }
                    if framing == .none { return finish(reusable: h.keepAlive && buffer.isEmpty) }
                }
                break
            }
        }
        guard state == .streamingBody, !buffer.isEmpty else { return }
        var keepGoing = true
        switch framing {
        case .length:
            let take = min(remaining, buffer.readableBytes)
            keepGoing = delegate?.upstreamDidReceiveBody(UnsafeRawBufferPointer(rebasing: buffer.readable[0..<take])) ?? false
            if state != .streamingBody { return }
            remaining -= take
            buffer.consume(take)
            if remaining == 0 { return finish(reusable: responseHead?.keepAlive == true && buffer.isEmpty) }
        case .chunked:
            let outcome = chunked.feed(buffer.readable) { slice in
                guard self.state == .streamingBody else { return }
                if !(self.delegate?.upstreamDidReceiveBody(slice) ?? false) { keepGoing = false }
            }
            if state != .streamingBody { return }
            switch outcome {
            case .needMore: buffer.clear()
            case .finished(let consumed):
                buffer.consume(consumed)
                return finish(reusable: responseHead?.keepAlive == true && buffer.isEmpty)
            case .invalid(let m): return fail(.badResponse("Upstream sent an invalid chunked body: \(m)"))
            case .tooLarge: return fail(.badResponse("Upstream sent an oversized chunk."))
            }
        case .untilClose:
            keepGoing = delegate?.upstreamDidReceiveBody(buffer.readable) ?? false
            if state != .streamingBody { return }
            buffer.clear()
        case .none:
            buffer.clear()
        }
        if !keepGoing { pauseReading() }
    }

    // MARK: flow control

    /// Stops reading from the provider (the client's buffer is full). Loop thread.
    public func pauseReading() {
        guard !paused, state == .streamingBody || state == .awaitingHead else { return }
        paused = true
        phaseDeadline = 0  // the provider is not idle; we are. Only `total` runs while paused.
        rearm()
    }

    /// Resumes after `pauseReading()`; reads whatever arrived meanwhile. Loop thread.
    public func resumeReading() {
        guard paused else { return }
        paused = false
        guard state == .streamingBody || state == .awaitingHead else { return }
        setPhase(.idle, timeouts.idle)
        // Strong, not `[weak self]`: the closure lives one loop iteration at most, and a weak
        // reference would give the exchange a side table (its every later retain on the
        // runtime's slow path). An exchange that ended meanwhile reads nothing (`readResponse`
        // runs only while awaiting or streaming, and with a connection).
        client.loop.deferToEndOfIteration { [self] in
            if !self.paused, let c = self.conn { self.readResponse(c) }
        }
    }

    /// The client went away: close the provider connection at once (RST), tell nobody.
    public func cancel() {
        guard state != .done else { return }
        state = .done
        conn?.close(abort: true)
        conn = nil
        delegate = nil
    }

    // MARK: ends

    private func connectionLost(_ why: String) {
        if reused && !retried && received == 0 && responseHead == nil {
            // A pooled connection the provider had already closed: retry once on a fresh one.
            retried = true
            conn?.close()
            conn = nil
            reused = false
            state = .idle
            return connectFresh()
        }
        fail(.reset(why))
    }

    private func finish(reusable: Bool) {
        guard state != .done else { return }
        state = .done
        if let c = conn {
            client.loop.cancel(c.timer)
            if reusable && provider.maxIdleConnections > 0 && client.live?.contains(provider.poolSlot) != false {
                client.pool.checkin(c, maxIdle: provider.maxIdleConnections,
                                    idleTimeoutNanos: provider.idleConnectionTimeout.nanoseconds)
            } else {
                c.close()
            }
        }
        conn = nil
        let d = delegate
        delegate = nil
        d?.upstreamDidFinish()
    }

    private func fail(_ f: UpstreamFailure) {
        guard state != .done else { return }
        state = .done
        conn?.close(abort: true)
        conn = nil
        let d = delegate
        delegate = nil
        let phase: UpstreamFailurePhase
        if responseHead != nil { phase = .afterHead }
        else if wrote { phase = .awaitingResponse }
        else { phase = .beforeRequestWritten }
        d?.upstreamDidFail(f, phase: phase)
    }

    // MARK: timers

    private func setPhase(_ kind: UpstreamTimeoutKind, _ d: Duration64) {
        phaseKind = kind
        phaseDeadline = client.loop.now &+ d.nanoseconds
        rearm()
    }

    private func rearm() {
        guard let c = conn else { return }
        let next = phaseDeadline == 0 ? totalDeadline : min(phaseDeadline, totalDeadline)
        client.loop.arm(c.timer, at: next)
    }

    func connectionTimerFired() {
        guard state != .done else { return }
        let now = client.loop.now                   // (refreshed as timers fire)
        if now >= totalDeadline { return fail(.timeout(.total)) }
        if phaseDeadline != 0 && now >= phaseDeadline {
            return fail(.timeout(phaseKind == .connect ? .connect : phaseKind))
        }
        rearm()
    }
}
