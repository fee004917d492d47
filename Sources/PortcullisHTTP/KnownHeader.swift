/// Header names the gateway acts on, recognised once at parse time from the raw bytes so the
/// hot path compares small integers instead of Strings.
public enum KnownHeader: UInt8, Sendable {
    case other
    case host, contentLength, transferEncoding, connection, keepAlive, te, trailer, upgrade
    case proxyConnection, proxyAuthenticate, proxyAuthorization, proxyOther
    case expect, authorization, contentType, cacheControl, xAccelBuffering
    case xRequestId, xForwardedFor, xForwardedProto, xForwardedHost, forwarded, xRealIp
    case xTenantId, xUserId, xTenantTier

    /// Hop-by-hop (RFC 9110 §7.6.1, plus any `Proxy-*`): never forwarded in either direction.
    @inline(__always) public var isHopByHop: Bool {
        switch self {
        case .connection, .keepAlive, .te, .trailer, .transferEncoding, .upgrade,
             .proxyConnection, .proxyAuthenticate, .proxyAuthorization, .proxyOther: true
        default: false
        }
    }

    /// Only the gateway may set these upstream: framing it computes, identity it verifies,
    /// forwarding facts it observes, and the provider credential.
    @inline(__always) public var isGatewayOwned: Bool {
        switch self {
        case .host, .contentLength, .authorization, .xRequestId, .xForwardedFor, .xForwardedProto,
             .xForwardedHost, .forwarded, .xRealIp, .xTenantId, .xUserId, .xTenantTier, .expect: true
        default: false
        }
    }

    static let table: [(String, KnownHeader)] = [
        ("host", .host), ("content-length", .contentLength), ("transfer-encoding", .transferEncoding),
        ("connection", .connection), ("keep-alive", .keepAlive), ("te", .te), ("trailer", .trailer),
        ("upgrade", .upgrade), ("proxy-connection", .proxyConnection), ("proxy-authenticate", .proxyAuthenticate),
        ("proxy-authorization", .proxyAuthorization), ("expect", .expect), ("authorization", .authorization),
        ("content-type", .contentType), ("cache-control", .cacheControl), ("x-accel-buffering", .xAccelBuffering),
        ("x-request-id", .xRequestId), ("x-forwarded-for", .xForwardedFor), ("x-forwarded-proto", .xForwardedProto),
        ("x-forwarded-host", .xForwardedHost), ("forwarded", .forwarded), ("x-real-ip", .xRealIp),
        ("x-tenant-id", .xTenantId), ("x-user-id", .xUserId), ("x-tenant-tier", .xTenantTier),
    ]

    /// Candidates bucketed by name length (lowercase ASCII bytes).
    static let byLength: [[([UInt8], KnownHeader)]] = {
        var b = [[([UInt8], KnownHeader)]](repeating: [], count: 32)
        for (n, k) in table { b[n.utf8.count].append((Array(n.utf8), k)) }
        return b
    }()

    /// Classifies an already-lowercased name given as bytes.
    @inline(__always)
    static func classify(_ p: UnsafeRawBufferPointer) -> KnownHeader {
        let n = p.count
        if n < 32 {
            for (bytes, k) in byLength[n] where bytes.withUnsafeBytes({ memEqual($0, p) }) { return k }
        }
        if n > 6 && p[0] == 112 && p[1] == 114 && p[2] == 111 && p[3] == 120 && p[4] == 121 && p[5] == 45 { return .proxyOther }
        return .other
    }

    /// Classifies a name in any case (response heads keep the provider's spelling).
    @inline(__always)
    static func classifyIgnoringCase(_ p: UnsafeRawBufferPointer) -> KnownHeader {
        let n = p.count
        if n < 32 {
            for (bytes, k) in byLength[n] {
                var same = true
                var i = 0
                while i < n { if bytes[i] != HeadLexer.lower(p[i]) { same = false; break }; i += 1 }
                if same { return k }
            }
        }
        if n > 6 && HeadLexer.lower(p[0]) == 112 && HeadLexer.lower(p[1]) == 114 && HeadLexer.lower(p[2]) == 111
            && HeadLexer.lower(p[3]) == 120 && HeadLexer.lower(p[4]) == 121 && p[5] == 45 { return .proxyOther }
        return .other
    }

    public static func classify(_ lowercasedName: String) -> KnownHeader {
        var s = lowercasedName
        return s.withUTF8 { classify(UnsafeRawBufferPointer($0)) }
    }

    @inline(__always) static func memEqual(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
        var i = 0
        while i < a.count { if a[i] != b[i] { return false }; i += 1 }
        return true
    }
}
