import PortcullisHTTP
import PortcullisPipeline
import PortcullisRouter

/// Answers the gateway's own endpoints before any routing: `GET /healthz` (alive),
/// `GET /readyz` (accepting traffic) and `GET /metrics` (Prometheus text). Nothing here goes
/// upstream or needs a tenant.
final class BuiltinEndpointsMiddleware: Middleware {
    let name = "builtin-endpoints"
    let metrics: GatewayMetrics
    let router: RouterMetrics

    init(metrics: GatewayMetrics, router: RouterMetrics) { self.metrics = metrics; self.router = router }

    func process(_ ctx: RequestContext) -> MiddlewareDecision {
        let path = ctx.path
        guard path == "/healthz" || path == "/readyz" || path == "/metrics" else { return .next }
        guard ctx.head.method == "GET" || ctx.head.method == "HEAD" else {
            return .respond(LocalResponse(.methodNotAllowed("Use GET for \(path).", allow: "GET, HEAD")))
        }
        if path == "/metrics" {
            return .respond(LocalResponse(status: 200, headers: [("content-type", "text/plain; version=0.0.4")],
                                          body: Array((metrics.render() + router.render()).utf8)))
        }
        return .respond(LocalResponse(status: 200, headers: [("content-type", "application/json")],
                                      body: Array("{\"status\":\"ok\"}".utf8)))
    }
}
