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
import Synchronization

/// What lives as long as the process, whatever the configuration: the resolver, the in-memory
/// limit buckets (a reload keeps what tenants have spent), Redis health and the counters.
final class ProcessState: Sendable {
    let resolver = HostResolver()
    let limitStore = MemoryLimitStore()
    let limiterHealth = LimiterHealth()
    let metrics: GatewayMetrics
    let accessLog: AccessLogWriter
    /// Open connections per client address (`server.max_connections_per_client`), all workers
    /// together: one short lock per accepted and per closed connection, none per request.
    let perClient = Mutex<[String: Int]>([:])

    init(_ c: GatewayConfiguration) {
        metrics = GatewayMetrics(workers: c.server.workers, maxTenants: c.metrics.maxTenants)
        accessLog = AccessLogWriter(capacity: c.log.bufferBytes)
    }
}

/// One configuration generation as every worker shares it, built on the main thread (start-up
/// or SIGHUP), never changed afterwards: the validated configuration and what was derived from
/// it off the event loops (keys read, TLS contexts with their CA files, Redis's address).
final class SharedGeneration: Sendable {
    /// 1 at start-up, +1 per successful reload.
    let number: Int
    let configuration: GatewayConfiguration
    let keyRing: JWTKeyRing?
    /// Endpoint slot → TLS context (https endpoints only).
    let tls: [Int: TLSClientContext]
    /// One shard per worker (worker `i` writes `routerMetrics[i]`; `/metrics` sums them).
    let routerMetrics: [RouterMetrics]
    /// Resolved once here: hiredis would resolve a name with a blocking call on a loop.
    let redisAddress: SocketAddress?

    init(number: Int, configuration: GatewayConfiguration, keyRing: JWTKeyRing?, tls: [Int: TLSClientContext],
         redisAddress: SocketAddress?) {
        self.number = number; self.configuration = configuration; self.keyRing = keyRing; self.tls = tls
        let ids = configuration.models.targets.map(\.id)
        self.routerMetrics = (0..<max(1, configuration.server.workers)).map { _ in RouterMetrics(targetIDs: ids) }
        self.redisAddress = redisAddress
    }

    var endpoints: Set<Int> { Set(configuration.providers.map(\.poolSlot)) }
}

/// A generation as one worker runs it: its own pipeline instance, circuit breakers and request
/// parser, built on the worker's loop thread when the generation is installed. A request takes
/// the worker's current generation when its first byte arrives and keeps it to the end (body
/// limits, pipeline, routing, breakers, logging), so a request never mixes two; in-flight
/// streams finish on the one they started with. Loop thread only.
final class WorkerGeneration {
    let shared: SharedGeneration
    var configuration: GatewayConfiguration { shared.configuration }
    /// This worker's router counters.
    let routerMetrics: RouterMetrics
    let requestParser: HTTPRequestParser
    let pipeline: Pipeline
    /// `pipeline` unretained, for the per-request run (a call on the stored reference retains
    /// and releases it): this generation owns the pipeline for its whole life.
    let pipelineRef: Unmanaged<Pipeline>
    /// This worker's circuit breakers, one per routing target (no locks: loop thread only).
    let breakers: CircuitBreakers?
    let maxConnections: Int
    /// This generation's routes and providers resolved to the worker's metrics counters.
    let metricsTables: MetricsShard.ShardTables

    init(_ shared: SharedGeneration, worker: Int, process: ProcessState, redis: RedisConnection?) {
        metricsTables = process.metrics.shard(worker).tables(for: shared.configuration)
        self.shared = shared
        routerMetrics = shared.routerMetrics[worker % shared.routerMetrics.count]
        let configuration = shared.configuration
        let s = configuration.server
        requestParser = HTTPRequestParser(limits: HTTPParserLimits(maxHeaderBytes: s.maxHeaderBytes,
                                                                   maxRequestLineBytes: min(8192, s.maxHeaderBytes)))
        maxConnections = max(1, s.maxConnections / max(1, s.workers))
        let models = configuration.models
        breakers = models.targets.isEmpty ? nil
            : CircuitBreakers(targets: models.targets.count, defaults: models.defaults, metrics: routerMetrics)
        // The request pipeline, in order. Each stage may answer early; none reaches around another.
        let authRequired = configuration.auth?.jwt != nil || configuration.routes.contains { $0.hmac != nil }
        var limiter: [Middleware] = []
        if let limits = configuration.limits {
            var backend: LimitBackend = MemoryLimitBackend(process.limitStore)
            if let r = configuration.redis, let conn = redis {
                backend = RedisLimitBackend(redis: conn, fallback: process.limitStore, policy: r.onFailure, health: process.limiterHealth,
                                            leaseDivisor: r.leaseDivisor, leaseHold: r.leaseHold)
            }
            limiter = [RateLimitMiddleware(limits: limits, backend: backend, keyPrefix: configuration.redis?.keyPrefix ?? "portcullis",
                                           health: process.limiterHealth)]
        }
        pipeline = Pipeline([
            RequestTargetMiddleware(),                                   // one canonical path (400)
            BuiltinEndpointsMiddleware(metrics: process.metrics, router: shared.routerMetrics,  // /healthz /readyz /metrics
                                       limiter: process.limiterHealth, failClosed: configuration.redis?.onFailure == .failClosed),
            RouteMiddleware(),                                           // path → route, provider (404)
            AuthenticationMiddleware(auth: configuration.auth, ring: shared.keyRing),  // JWT / HMAC (401/403)
            HeaderHygieneMiddleware(adding: s.upstreamHeaders),          // hop-by-hop, spoofed identity out
            TenantContextMiddleware(required: authRequired),             // verified x-tenant-id in
        ] + limiter + [                                                  // buckets checked and debited (429)
            AliasRouterMiddleware(),                                     // alias → RoutePlan (404/403/400)
        ])
        pipelineRef = Unmanaged.passUnretained(pipeline)
    }
}
