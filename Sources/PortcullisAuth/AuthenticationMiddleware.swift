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
        guard let verifier else { return .next }          // authentication (JWT) not configured
        if auth?.isPublic(ctx.path) ?? false { return .next }
        // The token's bytes stay in the request head: a token seen before is recognised
        // without a String made for it.
        let fs = ctx.head.fields
        var token: Range<Int>?
        var authorizations = 0
        for i in fs.indices where fs[i].known == .authorization {
            authorizations += 1
            token = ctx.head.raw.withUnsafeBytes { Self.bearerToken($0, fs[i]) }
        }
        if authorizations > 1 { return .respond(LocalResponse(.badRequest("More than one Authorization header."))) }
        // Anthropic's SDKs send the caller's credential as `x-api-key` (older releases) on their
        // own API: there the JWT may come that way too (it is never forwarded either way).
        if authorizations == 0 && ctx.callsAnthropicAPI {
            var keys = 0
            for i in fs.indices where fs[i].known == .xApiKey {
                keys += 1
                if fs[i].valueEnd > fs[i].valueStart { token = Int(fs[i].valueStart)..<Int(fs[i].valueEnd) }
            }
            if keys > 1 { return .respond(LocalResponse(.badRequest("More than one x-api-key header."))) }
        }
        guard let range = token else {
            return .respond(LocalResponse(.unauthorized("Missing bearer token: send Authorization: Bearer <JWT>.")))
        }
        switch ctx.head.raw.withUnsafeBytes({ verifier.verify(bytes: UnsafeRawBufferPointer(rebasing: $0[range])) }) {
        case .failure(let e):
            return .respond(LocalResponse(.invalidToken(e.message)))
        case .success(let id):
            guard let tenant = id.tenant else {
                let claim = auth?.jwt?.tenantClaim ?? "tenant_id"
                return .respond(LocalResponse(.forbidden("Token has no valid '\(claim)' claim: no tenant, no query.")))
            }
            ctx.setCaller(id, tenant: tenant, user: id.user, tier: id.tier)
            return .next
        }
    }

    /// Where the token is in an `Authorization: Bearer <token>` field's value (scheme
    /// case-insensitive, spaces after it skipped), as offsets into the head's bytes `raw`; nil
    /// when the value is not a non-empty bearer credential.
    static func bearerToken(_ raw: UnsafeRawBufferPointer, _ f: HeaderField) -> Range<Int>? {
        var i = Int(f.valueStart)
        let end = Int(f.valueEnd)
        guard end - i > 7 else { return nil }
        for c in "bearer ".utf8 {
            if raw[i] | 0x20 != c && !(c == 32 && raw[i] == 32) { return nil }
            i += 1
        }
        while i < end && raw[i] == 32 { i += 1 }
        return i < end ? i..<end : nil
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
///
/// The lines are rendered once per identity run: the last identity's rendering is kept and
/// shared (the context only holds a reference) while the next request's identity has the same
/// bytes, as a keep-alive connection's or an SDK session's requests do. One instance per
/// worker; loop thread only.
public final class TenantContextMiddleware: Middleware {
    public let name = "tenant-context"
    let required: Bool
    /// The last identity rendered, and its lines: one object (the fast path's check copies one
    /// reference, not four).
    private final class Rendered {
        let tenant: String, user: String?, tier: String?
        let lines: [UInt8]
        /// The context's `caller` they came from (held: the same object is the same caller).
        let caller: AnyObject?
        init(tenant: String, user: String?, tier: String?, lines: [UInt8], caller: AnyObject?) {
            self.tenant = tenant; self.user = user; self.tier = tier; self.lines = lines; self.caller = caller
        }
    }
    private var last: Rendered?

    public init(required: Bool) { self.required = required }

    public func process(_ ctx: RequestContext) -> MiddlewareDecision {
        guard let tenant = ctx.tenant else {
            return required ? .respond(LocalResponse(.forbidden("No verified tenant: no tenant, no query."))) : .next
        }
        if let l = last, (l.caller != nil && l.caller === ctx.caller)
            || (l.tenant.sameUTF8(tenant) && l.user.sameUTF8(ctx.user) && l.tier.sameUTF8(ctx.tier)) {
            ctx.upstreamIdentityLines = l.lines
            return .next
        }
        let lines = Self.lines(tenant: tenant, user: ctx.user, tier: ctx.tier)
        last = Rendered(tenant: tenant, user: ctx.user, tier: ctx.tier, lines: lines, caller: ctx.caller)
        ctx.upstreamIdentityLines = lines
        return .next
    }

    /// The identity's header lines. Identity values are checked header-safe (`IdentityValue`:
    /// visible ASCII) before they reach the context.
    static func lines(tenant: String, user: String?, tier: String?) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(48 + tenant.utf8.count + (user?.utf8.count ?? 0) + (tier?.utf8.count ?? 0))
        func line(_ name: StaticString, _ value: String) {
            out.append(name); out.append(": ")
            value.withUTF8Bytes { out.append(bytes: $0) }
            out.append("\r\n")
        }
        line("x-tenant-id", tenant)
        if let u = user { line("x-user-id", u) }
        if let t = tier { line("x-tenant-tier", t) }
        return out
    }
}
