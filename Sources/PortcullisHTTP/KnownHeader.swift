import PortcullisCore

/// Header names the gateway acts on, recognised once at parse time from the raw bytes so the
/// hot path compares small integers instead of Strings.
public enum KnownHeader: UInt8, Sendable {
    case other
    case host, contentLength, transferEncoding, connection, keepAlive, te, trailer, upgrade
    case proxyConnection, proxyAuthenticate, proxyAuthorization, proxyOther
    case expect, authorization, contentType, cacheControl, xAccelBuffering
    case xRequestId, xForwardedFor, xForwardedProto, xForwardedHost, forwarded, xRealIp
    case xTenantId, xUserId, xTenantTier
    /// Credential headers a provider may read (besides `authorization`).
    case xApiKey, apiKey, anthropicApiKey, xGoogApiKey

    /// Hop-by-hop (RFC 9110 §7.6.1, plus any `Proxy-*`): never forwarded in either direction.
    @inline(__always) public var isHopByHop: Bool {
        switch self {
        case .connection, .keepAlive, .te, .trailer, .transferEncoding, .upgrade,
             .proxyConnection, .proxyAuthenticate, .proxyAuthorization, .proxyOther: true
        default: false
        }
    }

    /// The lowercase name of a header known by exactly one name (nil for `.other` and
    /// `.proxyOther`): the parser uses the literal instead of building a String per header.
    public var lowercasedName: String? {
        switch self {
        case .other, .proxyOther: nil
        case .host: "host"
        case .contentLength: "content-length"
        case .transferEncoding: "transfer-encoding"
        case .connection: "connection"
        case .keepAlive: "keep-alive"
        case .te: "te"
        case .trailer: "trailer"
        case .upgrade: "upgrade"
        case .proxyConnection: "proxy-connection"
        case .proxyAuthenticate: "proxy-authenticate"
        case .proxyAuthorization: "proxy-authorization"
        case .expect: "expect"
        case .authorization: "authorization"
        case .contentType: "content-type"
        case .cacheControl: "cache-control"
        case .xAccelBuffering: "x-accel-buffering"
        case .xRequestId: "x-request-id"
        case .xForwardedFor: "x-forwarded-for"
        case .xForwardedProto: "x-forwarded-proto"
        case .xForwardedHost: "x-forwarded-host"
        case .forwarded: "forwarded"
        case .xRealIp: "x-real-ip"
        case .xTenantId: "x-tenant-id"
        case .xUserId: "x-user-id"
        case .xTenantTier: "x-tenant-tier"
        case .xApiKey: "x-api-key"
        case .apiKey: "api-key"
        case .anthropicApiKey: "anthropic-api-key"
        case .xGoogApiKey: "x-goog-api-key"
        }
    }

    /// Classifies a header name given as bytes, in any case. A switch on the length, then a
    /// case-folding compare against static strings: no tables, no hashing, no allocation.
    public static func classifyIgnoringCase(_ p: UnsafeRawBufferPointer) -> KnownHeader { classify(p, token: false) }

    /// `classifyIgnoringCase` compared a word at a time (`HeadLexer.tokenEqualsLowercase`), not
    /// byte by byte. Exact for a token; on other bytes it can also answer a known name for one
    /// with CR where the name has `-`, which `HeadLexer.field` looks for before trusting it.
    static func classifyToken(_ p: UnsafeRawBufferPointer) -> KnownHeader { classify(p, token: true) }

    @inline(__always) private static func classify(_ p: UnsafeRawBufferPointer, token: Bool) -> KnownHeader {
        guard let base = p.baseAddress else { return .other }
        @inline(__always) func eq(_ s: StaticString) -> Bool {    // (`s` is `p.count` bytes: the switch below)
            token ? HeadLexer.tokenEqualsLowercase(base, s.utf8Start, p.count)
                  : HeadLexer.matchesLowercase(p, from: 0, UnsafeRawBufferPointer(start: s.utf8Start, count: p.count))
        }
        switch p.count {
        case 2: if eq("te") { return .te }
        case 4: if eq("host") { return .host }
        case 6: if eq("expect") { return .expect }
        case 7:
            if eq("api-key") { return .apiKey }
            if eq("trailer") { return .trailer }
            if eq("upgrade") { return .upgrade }
        case 9:
            if eq("forwarded") { return .forwarded }
            if eq("x-real-ip") { return .xRealIp }
            if eq("x-user-id") { return .xUserId }
            if eq("x-api-key") { return .xApiKey }
        case 10:
            if eq("connection") { return .connection }
            if eq("keep-alive") { return .keepAlive }
        case 11: if eq("x-tenant-id") { return .xTenantId }
        case 12:
            if eq("content-type") { return .contentType }
            if eq("x-request-id") { return .xRequestId }
        case 13:
            if eq("authorization") { return .authorization }
            if eq("cache-control") { return .cacheControl }
            if eq("x-tenant-tier") { return .xTenantTier }
        case 14:
            if eq("content-length") { return .contentLength }
            if eq("x-goog-api-key") { return .xGoogApiKey }
        case 15: if eq("x-forwarded-for") { return .xForwardedFor }
        case 16:
            if eq("proxy-connection") { return .proxyConnection }
            if eq("x-forwarded-host") { return .xForwardedHost }
        case 17:
            if eq("transfer-encoding") { return .transferEncoding }
            if eq("x-forwarded-proto") { return .xForwardedProto }
            if eq("x-accel-buffering") { return .xAccelBuffering }
            if eq("anthropic-api-key") { return .anthropicApiKey }
        case 18: if eq("proxy-authenticate") { return .proxyAuthenticate }
        case 19: if eq("proxy-authorization") { return .proxyAuthorization }
        default: break
        }
        if p.count > 6 && (p[0] | 0x20) == 112 && (p[1] | 0x20) == 114 && (p[2] | 0x20) == 111
            && (p[3] | 0x20) == 120 && (p[4] | 0x20) == 121 && p[5] == 45 { return .proxyOther }
        return .other
    }

    /// Classifies `name` (any case) reading `_` as `-`, the way CGI-style servers merge
    /// `X_Tenant_Id` into `X-Tenant-Id`: what a backend behind the gateway may take it for.
    public static func classifyFoldingUnderscores(_ name: String) -> KnownHeader {
        name.withUTF8Bytes { classifyFoldingUnderscores($0) }
    }

    /// `classifyFoldingUnderscores` of a name given as bytes.
    public static func classifyFoldingUnderscores(_ name: UnsafeRawBufferPointer) -> KnownHeader {
        HeaderList.folded(name).withUnsafeBytes { classifyIgnoringCase($0) }
    }

    public static func classify(_ lowercasedName: String) -> KnownHeader {
        lowercasedName.withUTF8Bytes { classifyIgnoringCase($0) }
    }
}
