import PortcullisCore
import PortcullisConfig
import PortcullisHTTP
import PortcullisPipeline

/// The first gate (after routing): establishes who the caller is, from a verified JWT or, on
/// routes configured for it, a verified HMAC body signature. Never from client headers.
/// One instance per worker (it owns that worker's `JWTVerifier` and its token cache).
public final class AuthenticationMiddleware: Middleware {
    public let name = "authentication"
    let auth: AuthConfiguration?
    let verifier: JWTVerifier?

    public init(auth: AuthConfiguration?, ring: JWTKeyRing?) {
        self.auth = auth
        if let jwt = auth?.jwt, let ring { verifier = JWTVerifier(config: jwt, ring: ring) } else { verifier = nil }
    }

    public func process(_ ctx: RequestContext) -> MiddlewareDecision {
        if let hmac = ctx.route?.hmac { return checkHMAC(hmac, ctx) }
        guard let auth, let verifier else { return .next }          // authentication not configured
        if auth.isPublic(ctx.path) { return .next }
        if ctx.head.count(.authorization) > 1 { return .respond(LocalResponse(.badRequest("More than one Authorization header."))) }
        var authorization = ctx.head.first(.authorization)
        // Anthropic's SDKs send the caller's credential as `x-api-key` (older releases) on their
        // own API: there the JWT may come that way too (it is never forwarded either way).
        if authorization == nil && ctx.callsAnthropicAPI {
            let keys = ctx.head.headers.filter { $0.known == .xApiKey }
            if keys.count > 1 { return .respond(LocalResponse(.badRequest("More than one x-api-key header."))) }
            if let k = keys.first { authorization = "Bearer " + k.value }
        }
        guard let value = authorization, let token = Self.bearerToken(value) else {
            return .respond(LocalResponse(.unauthorized("Missing bearer token: send Authorization: Bearer <JWT>.")))
        }
        switch verifier.verify(token) {
        case .failure(let e):
            return .respond(LocalResponse(.invalidToken(e.message)))
        case .success(let id):
            guard let tenant = id.tenant else {
                let claim = auth.jwt?.tenantClaim ?? "tenant_id"
                return .respond(LocalResponse(.forbidden("Token has no valid '\(claim)' claim: no tenant, no query.")))
            }
            ctx.tenant = tenant
            ctx.user = id.user
            ctx.tier = id.tier
            return .next
        }
    }

    /// The token of an `Authorization: Bearer <token>` value (scheme case-insensitive), else nil.
    static func bearerToken(_ value: String) -> Substring? {
        let u = value.utf8
        guard u.count > 7 else { return nil }
        var i = u.startIndex
        for c in "bearer ".utf8 {
            if u[i] | 0x20 != c && !(c == 32 && u[i] == 32) { return nil }
            i = u.index(after: i)
        }
        while i < u.endIndex && u[i] == 32 { i = u.index(after: i) }
        guard i < u.endIndex else { return nil }
        return value[i...]
    }

    private func checkHMAC(_ cfg: HMACAuthConfiguration, _ ctx: RequestContext) -> MiddlewareDecision {
        guard let secret = cfg.secret else {
            return .respond(LocalResponse(.internalError("Webhook secret is not configured: \(cfg.secretEnv) is not set.")))
        }
        guard let provided = Self.single(cfg.header, ctx) else {
            return .respond(LocalResponse(.unauthorized("Missing or repeated \(cfg.header) signature header.")))
        }
        let decoded: [UInt8]?
        switch cfg.encoding {
        case .base64: decoded = Base64.decode(String(provided.trimmingOWS()))
        case .hex: decoded = Hex.decode(String(provided.trimmingOWS()))
        }
        guard let mac = decoded else { return .respond(LocalResponse(.invalidToken("Malformed \(cfg.header) signature."))) }
        let tenant: String?
        if let fixed = cfg.tenant { tenant = fixed }
        else if let hn = cfg.tenantHeader { tenant = Self.single(hn, ctx) }
        else { tenant = nil }

        switch cfg.mode {
        case .bodyOnly:
            let ok = ctx.body.withUnsafeBytes { SignatureVerifier.hmacMatches(.HS256, secret: secret, data: $0, mac: mac) }
            guard ok else { return .respond(LocalResponse(.invalidToken("Request signature does not match the body."))) }
        case .request:
            guard let tsText = Self.single(cfg.timestampHeader, ctx), let ts = Self.unixSeconds(tsText) else {
                return .respond(LocalResponse(.unauthorized("Missing or malformed \(cfg.timestampHeader) header (Unix seconds).")))
            }
            let now = Int64(WallClock.nowMillis() / 1000)
            let skew = Int64(cfg.maxSkew.nanoseconds / 1_000_000_000)
            guard abs(now - ts) <= skew else {
                return .respond(LocalResponse(.invalidToken("Request timestamp is outside the allowed window of \(cfg.maxSkew).")))
            }
            let input = Self.signedContext(timestamp: tsText, method: ctx.head.method, target: ctx.target,
                                           tenant: tenant ?? "", body: ctx.body)
            let ok = input.withUnsafeBytes { SignatureVerifier.hmacMatches(.HS256, secret: secret, data: $0, mac: mac) }
            guard ok else { return .respond(LocalResponse(.invalidToken("Request signature does not match the signed request."))) }
        }
        guard let t = tenant, IdentityValue.isValid(t) else {
            return .respond(LocalResponse(.forbidden("Signed request carries no valid tenant (\(cfg.tenantHeader ?? "tenant")).")))
        }
        ctx.tenant = t
        return .next
    }

    /// The string a `mode: request` signature covers (see `HMACAuthConfiguration`).
    public static func signedContext(timestamp: String, method: String, target: String, tenant: String, body: [UInt8]) -> [UInt8] {
        var s = Array("\(timestamp)\n\(method)\n\(target)\n\(tenant)\n".utf8)
        s += Hex.encode(SignatureVerifier.sha256(body)).utf8
        return s
    }

    /// The value of the one header named `lowercasedName` (nil when absent or repeated).
    static func single(_ lowercasedName: String, _ ctx: RequestContext) -> String? {
        var found: String?
        for h in ctx.head.headers where h.name == lowercasedName {
            if found != nil { return nil }
            found = h.value
        }
        return found
    }

    /// 1–12 decimal digits.
    static func unixSeconds(_ s: String) -> Int64? { DecimalDigits.value(s.utf8, maxDigits: 12) }
}

/// Identity values go into upstream headers: 1–256 visible ASCII characters, nothing else.
enum IdentityValue {
    static func isValid(_ s: String) -> Bool {
        let u = s.utf8
        return !u.isEmpty && u.count <= 256 && u.allSatisfy { $0 > 0x20 && $0 < 0x7F }
    }
}


/// Injects the verified identity upstream as `x-tenant-id`, `x-user-id`, `x-tenant-tier`
/// (`HeaderHygieneMiddleware` already removed every client-sent copy, in any case and count).
/// With authentication configured, a request without a verified tenant never goes upstream.
public final class TenantContextMiddleware: Middleware {
    public let name = "tenant-context"
    let required: Bool

    public init(required: Bool) { self.required = required }

    public func process(_ ctx: RequestContext) -> MiddlewareDecision {
        guard let tenant = ctx.tenant else {
            return required ? .respond(LocalResponse(.forbidden("No verified tenant: no tenant, no query."))) : .next
        }
        // (identity values are checked header-safe: `IdentityValue`)
        ctx.appendUpstreamHeader("x-tenant-id", tenant)
        if let u = ctx.user { ctx.appendUpstreamHeader("x-user-id", u) }
        if let t = ctx.tier { ctx.appendUpstreamHeader("x-tenant-tier", t) }
        return .next
    }
}
