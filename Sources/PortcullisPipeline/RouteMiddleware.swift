import PortcullisCore
import PortcullisHTTP
import PortcullisConfig

/// Puts the request target in canonical form (`RequestTarget`) before anything reads it, so
/// every later stage and the upstream see one path. Refusals are 400s.
/// The last target accepted and its canonical form are kept (a pipeline is one worker's, used
/// on its loop thread only): clients repeat their targets, and a repeat costs a byte compare.
public final class RequestTargetMiddleware: Middleware {
    public let name = "request-target"
    private var last: (raw: String, canonical: RequestTarget.Canonical)?
    public init() {}

    public func process(_ ctx: RequestContext) -> MiddlewareDecision {
        let raw = ctx.head.target
        if let l = last, raw.sameUTF8(l.raw) {
            ctx.path = l.canonical.path
            ctx.target = l.canonical.target
            return .next
        }
        switch RequestTarget.canonicalize(raw) {
        case .success(let c):
            last = (raw, c)
            ctx.path = c.path
            ctx.target = c.target
            return .next
        case .failure(let refusal):
            return .respond(LocalResponse(.badRequest(refusal.message)))
        }
    }
}

/// Finds the route for the canonical path (first match in config order) and its provider, then
/// checks the method against the route's `methods` (405 with `Allow`). No route → 404.
/// `TRACE`, `TRACK` and `CONNECT` are never forwarded, whatever the route says.
/// The last path and method routed and their route are kept (loop thread only, like the
/// pipeline; checked against the request's configuration): a repeat costs two byte compares.
public final class RouteMiddleware: Middleware {
    public let name = "route"
    private var last: (configuration: GatewayConfiguration, path: String, method: String, route: RouteConfiguration, list: Bool)?
    public init() {}

    public func process(_ ctx: RequestContext) -> MiddlewareDecision {
        let path = ctx.path
        let method = ctx.head.method
        if let l = last, l.configuration === ctx.configuration, path.sameUTF8(l.path), method.sameUTF8(l.method) {
            ctx.route = l.route
            if !l.list { ctx.provider = l.route.provider }
            return .next
        }
        if let list = ctx.configuration.modelListRoute, path.sameUTF8(list.path),
           HTTPMethodName.isGET(method) || HTTPMethodName.isHEAD(method) {
            ctx.route = list   // answered by the alias router, after authentication (it needs the tier)
            last = (ctx.configuration, path, method, list, true)
            return .next
        }
        for r in ctx.configuration.routes where r.matches(path) {
            guard r.methods.contains(where: { $0.sameUTF8(method) }), !Self.neverForwarded(method) else {
                return .respond(LocalResponse(.methodNotAllowed("Method \(String(method.prefix(32))) is not allowed on \(r.path).",
                                                                allow: r.allowHeader)))
            }
            ctx.route = r
            ctx.provider = r.provider
            last = (ctx.configuration, path, method, r, false)
            return .next
        }
        return .respond(LocalResponse(.notFound("No route for \(ctx.head.method) \(String(path.prefix(200))).")))
    }

    @inline(__always) static func neverForwarded(_ m: String) -> Bool {
        guard let f = m.utf8.first, f == UInt8(ascii: "T") || f == UInt8(ascii: "C") else { return false }
        return m == "TRACE" || m == "TRACK" || m == "CONNECT"
    }
}
