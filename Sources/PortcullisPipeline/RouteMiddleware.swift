import PortcullisCore
import PortcullisHTTP

/// Puts the request target in canonical form (`RequestTarget`) before anything reads it, so
/// every later stage and the upstream see one path. Refusals are 400s.
public final class RequestTargetMiddleware: Middleware {
    public let name = "request-target"
    public init() {}

    public func process(_ ctx: RequestContext) -> MiddlewareDecision {
        switch RequestTarget.canonicalize(ctx.head.target) {
        case .success(let c):
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
public final class RouteMiddleware: Middleware {
    public let name = "route"
    public init() {}

    public func process(_ ctx: RequestContext) -> MiddlewareDecision {
        let path = ctx.path
        if let list = ctx.configuration.modelListRoute, path.sameUTF8(list.path),
           HTTPMethodName.isGET(ctx.head.method) || HTTPMethodName.isHEAD(ctx.head.method) {
            ctx.route = list   // answered by the alias router, after authentication (it needs the tier)
            return .next
        }
        for r in ctx.configuration.routes where r.matches(path) {
            let method = ctx.head.method
            guard r.methods.contains(where: { $0.sameUTF8(method) }), !Self.neverForwarded(method) else {
                return .respond(LocalResponse(.methodNotAllowed("Method \(String(method.prefix(32))) is not allowed on \(r.path).",
                                                                allow: r.allowHeader)))
            }
            ctx.route = r
            ctx.provider = r.provider
            return .next
        }
        return .respond(LocalResponse(.notFound("No route for \(ctx.head.method) \(String(path.prefix(200))).")))
    }

    @inline(__always) static func neverForwarded(_ m: String) -> Bool {
        guard let f = m.utf8.first, f == UInt8(ascii: "T") || f == UInt8(ascii: "C") else { return false }
        return m == "TRACE" || m == "TRACK" || m == "CONNECT"
    }
}
