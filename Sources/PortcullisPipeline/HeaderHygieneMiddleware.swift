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

    public func process(_ ctx: RequestContext) -> MiddlewareDecision {
        let head = ctx.head
        let fields = head.fields
        let raw = head.raw
        // The header section is read in place, once (`head.raw` through the protocol retains the
        // array at every read): each field's name and value are offsets into these bytes, and
        // no String is made per field or per `Connection` element.
        let out = raw.withUnsafeBytes { b -> [UInt8] in
            // Names to drop besides hop-by-hop and gateway-owned ones (dropped anyway, and
            // `keep-alive`, what clients list, is one): those the client's `Connection` lists,
            // and the route's signature header. Folded (`HeaderList.folded`); usually none.
            var listed: [[UInt8]] = []
            for i in fields.indices where fields[i].known == .connection {
                HeaderList.forEach(b, Int(fields[i].valueStart), Int(fields[i].valueEnd)) { t in
                    let k = KnownHeader.classifyIgnoringCase(t)
                    if !(k.isHopByHop || k.isGatewayOwned) { listed.append(HeaderList.folded(t)) }
                }
            }
            if let h = ctx.route?.hmac { listed.append(h.header.withUTF8Bytes(HeaderList.folded)) }
            // The client's lines (each at most 3 bytes longer than received, see `writeLine`) and
            // the three injected lines (60 bytes besides their values), written with memcpy in a
            // scratch buffer (on the stack unless the head is large), then copied into one array of
            // the exact size (`Array` of a raw buffer is specialised; appending piece by piece cost
            // ~100 instructions a piece).
            let capacity = 64 + ctx.requestID.utf8Count + ctx.clientAddress.utf8.count + b.count + 4 * fields.count
            return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: capacity) { scratch -> [UInt8] in
                var w = UnsafeByteWriter(scratch)
                // Kept lines spelled `name: value\r\n` and adjacent in the head (most of a
                // client's) are copied as one run, their names then lowercased where they landed:
                // fields `runFirst...runLast`, all kept (a dropped line between two breaks the run).
                var runStart = 0, runEnd = 0, runFirst = 0, runLast = -1
                @inline(__always) func flushRun() {
                    guard runLast >= runFirst else { return }
                    let out = w.end
                    w.put(UnsafeRawBufferPointer(rebasing: b[runStart..<runEnd]))
                    for k in runFirst...runLast {
                        fields[k].lowercaseName(at: out + (Int(fields[k].nameStart) - runStart))
                    }
                    runLast = -1
                }
                for i in fields.indices {
                    let f = fields[i]
                    if f.known.isHopByHop || f.known.isGatewayOwned { continue }
                    let ns = Int(f.nameStart), ne = Int(f.nameEnd)
                    // A name with an underscore (rare) is classified as the backend may read it.
                    if f.known == .other && HeaderList.contains(95 /* _ */, b, ns, ne) {
                        let k = KnownHeader.classifyFoldingUnderscores(UnsafeRawBufferPointer(rebasing: b[ns..<ne]))
                        if k.isHopByHop || k.isGatewayOwned { continue }
                    }
                    if !listed.isEmpty && listed.contains(where: { HeaderList.foldedEquals(b, ns, ne, $0) }) { continue }
                    if let end = f.plainLineEnd(in: b) {
                        if runLast < runFirst || ns != runEnd { flushRun(); runStart = ns; runFirst = i }
                        runEnd = end; runLast = i
                        continue
                    }
                    flushRun()
                    f.writeLine(from: b, to: &w)
                }
                flushRun()
                if added.contains(.requestID) { w.put("x-request-id: "); w.put(ctx.requestID); w.put("\r\n") }
                if added.contains(.forwarded) {
                    w.put("x-forwarded-for: "); ctx.clientAddress.withUTF8Bytes { w.put($0) }
                    w.put("\r\nx-forwarded-proto: http\r\n")
                }
                return Array(w.written)
            }
        }
        ctx.upstreamHeaderLines = out   // the provider key is added per attempt (failover may change provider)
        return .next
    }
}
