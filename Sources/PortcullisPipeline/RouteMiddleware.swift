import PortcullisHTTP

/// Finds the route for the request path (first match in config order) and its provider.
/// No route → 404. Runs first: every later stage can rely on `context.route`.
public final class RouteMiddleware: Middleware {
    public let name = "route"
    public init() {}

    public func process(_ ctx: RequestContext) -> MiddlewareDecision {
        let path = ctx.head.path
        for r in ctx.configuration.routes where r.matches(path) {
            ctx.route = r
            ctx.provider = r.target
            return .next
        }
        return .respond(LocalResponse(.notFound("No route for \(ctx.head.method) \(String(path.prefix(200))).")))
    }
}
