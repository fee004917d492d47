import PortcullisCore
import PortcullisConfig
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

/// Builds the upstream header lines from the client's (a kept line is its bytes as received, the
/// name lowercased, the value without surrounding whitespace). Dropped:
/// - hop-by-hop headers, and every header the client's `Connection` names (any header but
///   `host`; names compared case-folded with `_` read as `-`);
/// - gateway-owned headers (identity, forwarding, framing, credentials), including spellings a
///   CGI-style backend would merge into them (`X_Tenant_Id`, `Transfer_Encoding`);
/// - the route's HMAC signature header (it proves the request to the gateway, not upstream).
/// Added, as `server.upstream_headers` lists: `X-Request-Id`; `X-Forwarded-For` and
/// `X-Forwarded-Proto`. (The provider key is added per attempt by the proxy coordinator, since
/// failover may change the provider.) Their client-sent copies are dropped either way.
public final class HeaderHygieneMiddleware: Middleware {
    public let name = "header-hygiene"
    /// The lines added (`server.upstream_headers`).
    let added: AddedHeaders
    public init(adding added: AddedHeaders = [.requestID, .forwarded]) { self.added = added }

    /// `name` lowercased with `_` read as `-`.
    static func folded(_ name: String) -> String {
        String(name.lowercased().map { $0 == "_" ? "-" : $0 })
    }

    public func process(_ ctx: RequestContext) -> MiddlewareDecision {
        let head = ctx.head
        let fields = head.fields
        var connectionListed: [String] = []
        for i in fields.indices where fields[i].known == .connection {
            connectionListed += head.value(fields[i]).lowercasedCommaList().map(Self.folded)
        }
        let signatureHeader = ctx.route?.hmac.map { Self.folded($0.header) }
        // The client's lines (each at most 3 bytes longer than received, see `writeLine`) and
        // the three injected lines (60 bytes besides their values), written with memcpy in a
        // scratch buffer (on the stack unless the head is large), then copied into one array of
        // the exact size (`Array` of a raw buffer is specialised; appending piece by piece cost
        // ~100 instructions a piece).
        let capacity = 64 + ctx.requestID.utf8Count + ctx.clientAddress.utf8.count + head.raw.count + 4 * fields.count
        let out = withUnsafeTemporaryAllocation(of: UInt8.self, capacity: capacity) { scratch -> [UInt8] in
            var w = UnsafeByteWriter(scratch)
            for i in fields.indices {
                let f = fields[i]
                if f.known.isHopByHop || f.known.isGatewayOwned { continue }
                // Strings only for the rare name with an underscore, or a `Connection` list or
                // signature header to check names against.
                let hasUnderscore = f.known == .other && head.nameContains(f, 95)
                if hasUnderscore {
                    let k = KnownHeader.classifyFoldingUnderscores(head.name(f))
                    if k.isHopByHop || k.isGatewayOwned { continue }
                }
                if !connectionListed.isEmpty || signatureHeader != nil {
                    let name = head.name(f)
                    let folded = hasUnderscore ? Self.folded(name) : name
                    if f.known != .host && connectionListed.contains(folded) { continue }
                    if folded == signatureHeader { continue }
                }
                head.writeLine(f, to: &w)
            }
            if added.contains(.requestID) { w.put("x-request-id: "); w.put(ctx.requestID); w.put("\r\n") }
            if added.contains(.forwarded) {
                w.put("x-forwarded-for: "); ctx.clientAddress.withUTF8Bytes { w.put($0) }
                w.put("\r\nx-forwarded-proto: http\r\n")
            }
            return Array(w.written)
        }
        ctx.upstreamHeaderLines = out   // the provider key is added per attempt (failover may change provider)
        return .next
    }
}
