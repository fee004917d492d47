import PortcullisHTTP

/// Builds the upstream header set from the client's: drops hop-by-hop headers (and any header the
/// client's `Connection` names), the client's `Authorization` (the provider key replaces it),
/// client-sent forwarding and identity headers, and framing headers the upstream client sets
/// itself. Adds `X-Request-Id`, `X-Forwarded-For`, `X-Forwarded-Proto` and the provider key.
public final class HeaderHygieneMiddleware: Middleware {
    public let name = "header-hygiene"
    public init() {}

    /// Headers only the gateway may set upstream (identity is injected from verified claims).
    public static let gatewayOwned: Set<String> = [
        "host", "content-length", "authorization", "x-request-id", "x-forwarded-for",
        "x-forwarded-proto", "x-forwarded-host", "forwarded", "x-real-ip",
        "x-tenant-id", "x-user-id", "x-tenant-tier", "expect",
    ]

    /// `gatewayOwned.contains(name)`, without hashing: most names fail on the first byte.
    @inline(__always)
    static func isGatewayOwned(_ name: String) -> Bool {
        guard let f = name.utf8.first, f == UInt8(ascii: "h") || f == UInt8(ascii: "c") || f == UInt8(ascii: "a")
                || f == UInt8(ascii: "x") || f == UInt8(ascii: "e") || f == UInt8(ascii: "f") else { return false }
        return gatewayOwned.contains(name)
    }

    public func process(_ ctx: RequestContext) -> MiddlewareDecision {
        var connectionListed: [Substring] = []
        for h in ctx.head.headers where h.name == "connection" {
            connectionListed += h.value.lowercased().split(separator: ",").map { $0.trimmingSpaces() }
        }
        var out: [HTTPHeader] = []
        out.reserveCapacity(ctx.head.headers.count + 4)
        for h in ctx.head.headers {
            if HopByHop.contains(h.name) || Self.isGatewayOwned(h.name) { continue }
            if !connectionListed.isEmpty && connectionListed.contains(where: { $0 == h.name }) { continue }
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

extension Substring {
    func trimmingSpaces() -> Substring {
        var s = self
        while s.first == " " || s.first == "\t" { s = s.dropFirst() }
        while s.last == " " || s.last == "\t" { s = s.dropLast() }
        return s
    }
}
