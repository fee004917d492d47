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
/// its upstream pool and its pipeline instance. Nothing in a worker is shared with another
/// worker except the read-only configuration, resolver cache and TLS contexts, so the request
/// path takes no locks. Everything here runs on the worker's loop thread.
final class Worker: DeferredTask {
    let loop: EventLoop
    let configuration: GatewayConfiguration
    let requestParser: HTTPRequestParser
    let pipeline: Pipeline
    let upstream: UpstreamClient
    /// This worker's circuit breakers, one per routing target (no locks: loop thread only).
    let breakers: CircuitBreakers?
    let routerMetrics: RouterMetrics
    let requestIDs = RequestIDGenerator()
    let maxConnections: Int
    private var connections: [ObjectIdentifier: HTTPServerConnection] = [:]
    private var listeners: [Listener] = []
    /// Access-log lines of this iteration, written with one `write(2)` at its end.
    private let accessBuffer = ByteBuffer(capacity: 4096)
    private var accessFlushQueued = false

    init(loop: EventLoop, configuration: GatewayConfiguration, listenFDs: [Int32],
         resolver: HostResolver, tls: [String: TLSClientContext], keyRing: JWTKeyRing?, routerMetrics: RouterMetrics,
         limitStore: MemoryLimitStore, limiterHealth: LimiterHealth, redisAddress: SocketAddress?) throws {
        self.loop = loop
        self.configuration = configuration
        let s = configuration.server
        self.requestParser = HTTPRequestParser(limits: HTTPParserLimits(maxHeaderBytes: s.maxHeaderBytes,
                                                                        maxRequestLineBytes: min(8192, s.maxHeaderBytes)))
        self.maxConnections = max(1, s.maxConnections / max(1, s.workers))
        self.upstream = UpstreamClient(loop: loop, resolver: resolver, tlsContexts: tls)
        self.routerMetrics = routerMetrics
        let models = configuration.models
        self.breakers = models.targets.isEmpty ? nil
            : CircuitBreakers(targets: models.targets.count, defaults: models.defaults, metrics: routerMetrics)
        // The request pipeline, in order. Each stage may answer early; none reaches around another.
        let authRequired = configuration.auth?.jwt != nil || configuration.routes.contains { $0.hmac != nil }
        var limiter: [Middleware] = []
        if let limits = configuration.limits {
            var backend: LimitBackend = MemoryLimitBackend(limitStore)
            if let r = configuration.redis, let addr = redisAddress {
                let conn = RedisConnection(loop: loop, host: addr.ipString, port: addr.port, password: r.password,
                                           database: r.database, timeout: r.timeout)
                backend = RedisLimitBackend(redis: conn, fallback: limitStore, policy: r.onFailure, health: limiterHealth)
            }
            limiter = [RateLimitMiddleware(limits: limits, backend: backend, keyPrefix: configuration.redis?.keyPrefix ?? "portcullis",
                                           health: limiterHealth)]
        }
        self.pipeline = Pipeline([
            RequestTargetMiddleware(),                                   // one canonical path (400)
            BuiltinEndpointsMiddleware(metrics: GatewayMetrics.shared, router: routerMetrics,  // /healthz /readyz /metrics
                                       limiter: limiterHealth, failClosed: configuration.redis?.onFailure == .failClosed),
            RouteMiddleware(),                                           // path → route, provider (404)
            AuthenticationMiddleware(auth: configuration.auth, ring: keyRing),  // JWT / HMAC (401/403)
            HeaderHygieneMiddleware(),                                   // hop-by-hop, spoofed identity out
            TenantContextMiddleware(required: authRequired),             // verified x-tenant-id in
        ] + limiter + [                                                  // buckets checked and debited (429)
            AliasRouterMiddleware(),                                     // alias → RoutePlan (404/403/400)
        ])
        for fd in listenFDs {
            let l = Listener(fd: fd, worker: self)
            try loop.registerListener(fd: fd, handler: l)
            listeners.append(l)
        }
    }

    func accepted(fd: Int32, peer: SocketAddress) {
        if connections.count >= maxConnections {
            GatewayMetrics.shared.rejectedConnections.add(1, ordering: .relaxed)
            Syscall.setLingerZero(fd)
            Syscall.close(fd)
            return
        }
        Syscall.setNoDelay(fd)
        let c = HTTPServerConnection(fd: fd, peer: peer, worker: self)
        do { try loop.register(fd: fd, handler: c) } catch {
            Syscall.close(fd)
            return
        }
        connections[ObjectIdentifier(c)] = c
        GatewayMetrics.shared.openConnections.add(1, ordering: .relaxed)
        c.start()
    }

    func connectionClosed(_ c: HTTPServerConnection) {
        if connections.removeValue(forKey: ObjectIdentifier(c)) != nil {
            GatewayMetrics.shared.openConnections.subtract(1, ordering: .relaxed)
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

    /// Stops accepting new connections.
    func stopListening() {
        for l in listeners { loop.unregister(fd: l.fd); Syscall.close(l.fd) }
        listeners.removeAll()
    }

    /// Queues one access-log line (with its newline).
    func logAccess(_ line: String) {
        accessBuffer.append(line)
        if !accessFlushQueued {
            accessFlushQueued = true
            loop.deferToEndOfIteration(self)
        }
    }

    func runDeferredTask() {
        accessFlushQueued = false
        guard !accessBuffer.isEmpty else { return }
        Log.accessBytes(accessBuffer.readable)
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
                if e == EMFILE || e == ENFILE { Log.error("accept: \(Syscall.errorString(e))") }
                return
            }
        }
    }
}
