import PortcullisCore
import PortcullisHTTP

/// Builds the upstream header set from the client's: drops hop-by-hop headers (and any header the
/// client's `Connection` names), the client's `Authorization` (the provider key replaces it),
/// client-sent forwarding and identity headers, and framing headers the upstream client sets
/// itself. Adds `X-Request-Id`, `X-Forwarded-For`, `X-Forwarded-Proto` and the provider key.
public final class HeaderHygieneMiddleware: Middleware {
    public let name = "header-hygiene"
    public init() {}

    public func process(_ ctx: RequestContext) -> MiddlewareDecision {
        var connectionListed: [String] = []
        for h in ctx.head.headers where h.known == .connection {
            connectionListed += h.value.lowercasedCommaList()
        }
        var out: [HTTPHeader] = []
        out.reserveCapacity(ctx.head.headers.count + 4)
        for h in ctx.head.headers {
            if h.known.isHopByHop || h.known.isGatewayOwned { continue }
            if !connectionListed.isEmpty && h.known == .other && connectionListed.contains(where: { $0 == h.name }) { continue }
            out.append(h)
        }
        out.append(HTTPHeader(name: "x-request-id", value: ctx.requestID))
        out.append(HTTPHeader(name: "x-forwarded-for", value: ctx.clientAddress))
        out.append(HTTPHeader(name: "x-forwarded-proto", value: "http"))
        if let p = ctx.provider, let envName = p.apiKeyEnv {
            guard let key = p.apiKey else {
                return .respond(LocalResponse(.internalError("Provider '\(p.name)' has no API key: \(envName) is not set.")))
            }
            if p.kind == .anthropic {
                out.append(HTTPHeader(name: "x-api-key", value: key))
            } else {
                out.append(HTTPHeader(name: "authorization", value: "Bearer " + key))
            }
        }
        ctx.upstreamHeaders = out
        return .next
    }
}
