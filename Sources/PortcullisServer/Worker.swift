import CLinux
import PortcullisCore
import PortcullisEventLoop
import PortcullisHTTP
import PortcullisConfig
import PortcullisPipeline
import PortcullisUpstream
import PortcullisAuth
import PortcullisRouter
import PortcullisLimiter
import PortcullisRedis
#if canImport(Glibc)
import Glibc
#endif

/// One worker thread: an event loop, its own SO_REUSEPORT listeners, its client connections,
/// its upstream pool and its generation (pipeline, breakers). Nothing in a worker is shared
/// with another worker except the read-only generation, resolver cache and TLS contexts, so the
/// request path takes no locks. Everything here runs on the worker's loop thread.
final class Worker: DeferredTask {
    let loop: EventLoop
    let process: ProcessState
    /// The generation new requests start on; `install` replaces it (a reload).
    private(set) var current: WorkerGeneration
    var configuration: GatewayConfiguration { current.configuration }
    let upstream: UpstreamClient
    let requestIDs = RequestIDGenerator()
    /// This worker's Redis connection, kept across reloads while `redis:` names the same server.
    private var redis: (key: String, connection: RedisConnection)?
    private var connections: [ObjectIdentifier: HTTPServerConnection] = [:]
    private var listeners: [Listener] = []
    /// Access-log lines of this iteration, handed to the log writer at its end.
    private let accessBuffer = ByteBuffer(capacity: 4096)
    private var accessLines = 0
    /// This worker is queued to run at the end of the iteration (access lines, completed responses).
    private var deferredQueued = false
    /// Connections whose complete response waits to be written (`responseCompleted`), and the
    /// batch being written (the two trade places, as the loop's deferred queues do: no write
    /// of a batch allocates).
    private var completedResponses: [HTTPServerConnection] = []
    private var writingResponses: [HTTPServerConnection] = []
    /// This worker's metrics shard (written here only).
    let metrics: MetricsShard

    init(loop: EventLoop, generation: SharedGeneration, process: ProcessState, listenFDs: [Int32]) throws {
        self.loop = loop
        self.process = process
        self.metrics = process.metrics.shard(loop.index)
        self.upstream = UpstreamClient(loop: loop, resolver: process.resolver, tlsContexts: generation.tls)
        let redis = Worker.redis(for: generation, loop: loop, replacing: nil)
        self.redis = redis
        self.current = WorkerGeneration(generation, worker: loop.index, process: process, redis: redis?.connection)
        for fd in listenFDs {
            let l = Listener(fd: fd, worker: self)
            try loop.registerListener(fd: fd, handler: l)
            listeners.append(l)
        }
    }

    /// Switches new requests to `generation` (a reload; loop thread). Requests in flight keep
    /// theirs; idle pooled connections to endpoints that went away are closed.
    func install(_ generation: SharedGeneration) {
        upstream.use(tlsContexts: generation.tls, endpoints: generation.endpoints)
        redis = Worker.redis(for: generation, loop: loop, replacing: redis)
        current = WorkerGeneration(generation, worker: loop.index, process: process, redis: redis?.connection)
    }

    /// The Redis connection for a generation: `old` when the server, database, password and
    /// timeout are unchanged, else a new one (`old` then closes once its pending replies have
    /// arrived); nil when the generation keeps no limits in Redis.
    private static func redis(for g: SharedGeneration, loop: EventLoop,
                              replacing old: (key: String, connection: RedisConnection)?) -> (key: String, connection: RedisConnection)? {
        guard let r = g.configuration.redis, g.configuration.limits != nil, let addr = g.redisAddress else {
            old?.connection.close()
            return nil
        }
        let key = "\(addr)|\(r.database)|\(r.password ?? "")|\(r.timeout)"
        if let old, old.key == key { return old }
        old?.connection.close()
        return (key, RedisConnection(loop: loop, host: addr.ipString, port: addr.port, password: r.password,
                                     database: r.database, timeout: r.timeout))
    }

    func accepted(fd: Int32, peer: SocketAddress) {
        if connections.count >= current.maxConnections {
            metrics.update { $0.rejectedConnections += 1 }
            return refuse(fd)
        }
        let cap = configuration.server.maxConnectionsPerClient
        var client: String?
        if cap > 0 {
            let ip = peer.ipString
            let admitted = process.perClient.withLock { m -> Bool in
                let n = m[ip, default: 0]
                guard n < cap else { return false }
                m[ip] = n + 1
                return true
            }
            guard admitted else {
                metrics.update { $0.rejectedPerClient += 1 }
                return refuse(fd)
            }
            client = ip
        }
        Syscall.setNoDelay(fd)
        let c = HTTPServerConnection(fd: fd, peer: peer, worker: self)
        c.countedClient = client
        do { try loop.register(fd: fd, handler: c) } catch {
            Syscall.close(fd)
            return
        }
        connections[ObjectIdentifier(c)] = c
        metrics.update { $0.openConnections += 1 }
        c.start()
    }

    /// A connection over a limit: reset at once (RST), never served.
    private func refuse(_ fd: Int32) {
        Syscall.setLingerZero(fd)
        Syscall.close(fd)
    }

    func connectionClosed(_ c: HTTPServerConnection) {
        if let ip = c.countedClient {
            c.countedClient = nil
            process.perClient.withLock { m in
                let n = (m[ip] ?? 1) - 1
                m[ip] = n > 0 ? n : nil
            }
        }
        if connections.removeValue(forKey: ObjectIdentifier(c)) != nil {
            metrics.update { $0.openConnections -= 1 }
        }
        stopIfDrained()
    }

    /// Set by `beginDrain()`: responses close their connections; the loop stops when none is left.
    private(set) var draining = false

    /// Graceful shutdown (SIGTERM): stop accepting, close idle keep-alive connections, let every
    /// in-flight request finish (its connection closes after the response), then stop the loop.
    func beginDrain() {
        guard !draining else { return }
        draining = true
        stopListening()
        for c in connections.values where c.isIdle { c.close() }
        stopIfDrained()
    }

    private func stopIfDrained() {
        if draining && connections.isEmpty { loop.stop() }
    }

    func isListening(_ l: Listener) -> Bool { listeners.contains { $0 === l } }

    /// Stops accepting new connections.
    func stopListening() {
        for l in listeners { loop.unregister(fd: l.fd); Syscall.close(l.fd) }
        listeners.removeAll()
    }

    /// One finished request's access line (the caller checked that `log.access` is on), queued
    /// for the log writer at the end of the loop iteration.
    func queueAccessLine(_ r: RequestSummary, format: LogConfiguration.Format) {
        accessBuffer.append(AccessLogFormat.line(r, format: format, nowMillis: WallClock.nowMillis()))
        accessLines += 1
        queueDeferredTask()
    }

    /// Complete responses are written together, `responseBatch` at a time and the rest at the
    /// end of the loop iteration: a client woken once finds several answers (as HAProxy flushes),
    /// and in a long iteration the clients get the first answers before its last reads. On the
    /// plain route under wrk (64 connections, ~30 answers an iteration), one run of each way
    /// side by side: at once 23.6k req/s, 16 at a time 24.7k, all at the end 23.7k (the cores
    /// idle most: 8.5 µs a request against 6–7); paired runs of 16 against all-at-the-end read
    /// +4 %, +8 %, −4.5 %, +12.5 %: this host's noise is of that size.
    static let responseBatch = 16

    /// `c` queued the last bytes of a response; they are written with the batch, at the latest
    /// when this worker's end-of-iteration task runs.
    func responseCompleted(_ c: HTTPServerConnection) {
        completedResponses.append(c)
        if completedResponses.count >= Worker.responseBatch { writeCompletedResponses() } else { queueDeferredTask() }
    }

    private func writeCompletedResponses() {
        guard !completedResponses.isEmpty else { return }
        swap(&completedResponses, &writingResponses)
        for c in writingResponses { c.flushCompletedResponse() }
        writingResponses.removeAll(keepingCapacity: true)
    }

    private func queueDeferredTask() {
        if !deferredQueued {
            deferredQueued = true
            loop.deferToEndOfIteration(self)
        }
    }

    func runDeferredTask() {
        deferredQueued = false
        writeCompletedResponses()
        guard !accessBuffer.isEmpty else { return }
        if !process.accessLog.enqueue(accessBuffer.readable) {
            let n = accessLines
            metrics.update { $0.accessLogDropped += n }
        }
        accessLines = 0
        accessBuffer.clear()
        accessBuffer.shrinkIfIdle(to: 65536)
    }
}

/// A listening socket of one worker. Accepts up to 64 connections per readiness event so one
/// busy listener cannot starve the loop's other fds.
final class Listener: EventHandler {
    let fd: Int32
    unowned let worker: Worker

    init(fd: Int32, worker: Worker) { self.fd = fd; self.worker = worker }

    func handleEvent(_ events: UInt32) {
        for _ in 0..<64 {
            switch Sockets.accept(fd) {
            case .accepted(let cfd, let peer): worker.accepted(fd: cfd, peer: peer)
            case .wouldBlock: return
            case .failed(let e):
                if e == EMFILE || e == ENFILE { return pause(e) }
                return
            }
        }
    }

    /// Out of file descriptors: the listener is level-triggered, so retrying at once would spin.
    /// Stop watching it for 100 ms (connections wait in the kernel's backlog), count it, log at
    /// most once a second.
    private var lastLog: UInt64 = 0
    private func pause(_ e: Int32) {
        worker.metrics.update { $0.acceptFDExhausted += 1 }
        let now = MonotonicClock.now()
        if now &- lastLog > 1_000_000_000 {
            lastLog = now
            Log.error("accept: \(Syscall.errorString(e)); not accepting for 100 ms (raise LimitNOFILE or lower max_connections)")
        }
        let loop = worker.loop
        loop.unregister(fd: fd)
        _ = loop.schedule(after: 100_000_000) { [weak self] in
            guard let self, self.worker.isListening(self) else { return }
            try? loop.registerListener(fd: self.fd, handler: self)
        }
    }
}
