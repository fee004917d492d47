import PortcullisHTTP
import PortcullisPipeline
import PortcullisRouter
import PortcullisLimiter

/// Answers the gateway's own endpoints before any routing: `GET /healthz` (alive),
/// `GET /readyz` (accepting traffic) and `GET /metrics` (Prometheus text). Nothing here goes
/// upstream or needs a tenant.
final class BuiltinEndpointsMiddleware: Middleware {
    let name = "builtin-endpoints"
    let metrics: GatewayMetrics
    let router: [RouterMetrics]
    let limiter: LimiterHealth
    /// `redis.on_failure: fail_closed`: not ready while Redis cannot answer.
    let failClosed: Bool

    init(metrics: GatewayMetrics, router: [RouterMetrics], limiter: LimiterHealth, failClosed: Bool) {
        self.metrics = metrics; self.router = router; self.limiter = limiter; self.failClosed = failClosed
    }

    func process(_ ctx: RequestContext) -> MiddlewareDecision {
        let path = ctx.path
        let n = path.utf8.count              // (most requests are for none of them: no string compares)
        guard n == 7 || n == 8, path == "/healthz" || path == "/readyz" || path == "/metrics" else { return .next }
        guard HTTPMethodName.isGET(ctx.head.method) || HTTPMethodName.isHEAD(ctx.head.method) else {
            return .respond(LocalResponse(.methodNotAllowed("Use GET for \(path).", allow: "GET, HEAD")))
        }
        if path == "/metrics" {
            return .respond(LocalResponse(status: 200, headers: [("content-type", "text/plain; version=0.0.4")],
                                          body: Array((metrics.render() + RouterMetrics.render(router) + limiterMetrics()).utf8)))
        }
        if path == "/readyz" && failClosed && limiter.degraded.load(ordering: .relaxed) {
            return .respond(LocalResponse(status: 503, headers: [("content-type", "application/json")],
                                          body: Array("{\"status\":\"redis unavailable\"}".utf8)))
        }
        return .respond(LocalResponse(status: 200, headers: [("content-type", "application/json")],
                                      body: Array("{\"status\":\"ok\"}".utf8)))
    }

    func limiterMetrics() -> String {
        """
        # HELP portcullis_limiter_degraded 1 while Redis cannot answer limit decisions (fail_open: memory decides; fail_closed: 503).
        # TYPE portcullis_limiter_degraded gauge
        portcullis_limiter_degraded \(limiter.degraded.load(ordering: .relaxed) ? 1 : 0)
        # HELP portcullis_limiter_redis_failures_total Limit decisions Redis could not make in time.
        # TYPE portcullis_limiter_redis_failures_total counter
        portcullis_limiter_redis_failures_total \(limiter.failures.load(ordering: .relaxed))

        """ + limiter.renderLimited()
    }
}
