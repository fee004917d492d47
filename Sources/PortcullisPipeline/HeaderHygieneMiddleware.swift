import PortcullisCore
import PortcullisHTTP

extension KnownHeader {
    /// Only the gateway may set these upstream: framing it computes, identity it verifies,
    /// forwarding facts it observes, and provider credentials (every header a provider may read
    /// a key from). Client-sent copies are dropped in every spelling.
    @inline(__always) public var isGatewayOwned: Bool {
        switch self {
        case .host, .contentLength, .authorization, .xApiKey, .apiKey, .anthropicApiKey, .xGoogApiKey,
             .xRequestId, .xForwardedFor, .xForwardedProto, .xForwardedHost, .forwarded, .xRealIp,
             .xTenantId, .xUserId, .xTenantTier, .expect: true
        default: false
        }
    }
}

/// Builds the upstream header set from the client's. Dropped:
/// - hop-by-hop headers, and every header the client's `Connection` names (any header but
///   `host`; names compared case-folded with `_` read as `-`);
/// - gateway-owned headers (identity, forwarding, framing, credentials), including spellings a
///   CGI-style backend would merge into them (`X_Tenant_Id`, `Transfer_Encoding`);
/// - the route's HMAC signature header (it proves the request to the gateway, not upstream).
/// Added: `X-Request-Id`, `X-Forwarded-For`, `X-Forwarded-Proto` (the provider key is added per
/// attempt by the proxy coordinator, since failover may change the provider).
public final class HeaderHygieneMiddleware: Middleware {
    public let name = "header-hygiene"
    public init() {}

    /// `name` lowercased with `_` read as `-`.
    static func folded(_ name: String) -> String {
        String(name.lowercased().map { $0 == "_" ? "-" : $0 })
    }

    public func process(_ ctx: RequestContext) -> MiddlewareDecision {
        let headers = ctx.head.headers
        var connectionListed: [String] = []
        for i in headers.indices where headers[i].known == .connection {
            connectionListed += headers[i].value.lowercasedCommaList().map(Self.folded)
        }
        let signatureHeader = ctx.route?.hmac.map { Self.folded($0.header) }
        // The three injected lines, and room for the identity lines `TenantContextMiddleware` appends.
        var size = 160 + ctx.requestID.utf8.count + ctx.clientAddress.utf8.count
        for i in headers.indices { size += headers[i].name.utf8.count + headers[i].value.utf8.count + 4 }
        var out: [UInt8] = []
        out.reserveCapacity(size)
        func line(_ name: String, _ value: String) {
            name.withUTF8Bytes { out.append(contentsOf: $0) }
            out.append(58); out.append(32)
            value.withUTF8Bytes { out.append(contentsOf: $0) }
            out.append(13); out.append(10)
        }
        for i in headers.indices {
            let known = headers[i].known
            if known.isHopByHop || known.isGatewayOwned { continue }
            let h = headers[i]
            let hasUnderscore = h.known == .other && h.name.utf8.contains(95)
            if hasUnderscore {
                let k = KnownHeader.classifyFoldingUnderscores(h.name)
                if k.isHopByHop || k.isGatewayOwned { continue }
            }
            if !connectionListed.isEmpty || signatureHeader != nil {
                let f = hasUnderscore ? Self.folded(h.name) : h.name
                if h.known != .host && connectionListed.contains(f) { continue }
                if f == signatureHeader { continue }
            }
            line(h.name, h.value)
        }
        out.append("x-request-id: "); ctx.requestID.withUTF8Bytes { out.append(contentsOf: $0) }
        out.append("\r\nx-forwarded-for: "); ctx.clientAddress.withUTF8Bytes { out.append(contentsOf: $0) }
        out.append("\r\nx-forwarded-proto: http\r\n")
        ctx.upstreamHeaderLines = out   // the provider key is added per attempt (failover may change provider)
        return .next
    }
}
