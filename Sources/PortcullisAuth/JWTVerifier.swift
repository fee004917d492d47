import PortcullisCore
import PortcullisJSON
import COpenSSL
import PortcullisConfig

/// Who a verified token says the caller is.
/// What a verified token says of its caller. Immutable, and a class: the verifier's cache hands
/// out one object for every request carrying the same token (a result copies one reference).
public final class VerifiedIdentity: Sendable, Equatable, CustomStringConvertible {
    public let tenant: String?
    public let user: String?
    public let tier: String?
    public let expiresAt: Int64

    public init(tenant: String?, user: String?, tier: String?, expiresAt: Int64) {
        self.tenant = tenant; self.user = user; self.tier = tier; self.expiresAt = expiresAt
    }

    public static func == (a: VerifiedIdentity, b: VerifiedIdentity) -> Bool {
        a === b || (a.tenant == b.tenant && a.user == b.user && a.tier == b.tier && a.expiresAt == b.expiresAt)
    }

    public var description: String {
        "VerifiedIdentity(tenant: \(tenant ?? "nil"), user: \(user ?? "nil"), tier: \(tier ?? "nil"), expiresAt: \(expiresAt))"
    }
}

/// Why a token was refused. The message names the reason, never key material.
public enum JWTError: Error, Equatable, Sendable {
    case malformed(String)
    case unknownKey(String)
    case algorithmMismatch(token: String, key: String)
    case badSignature
    case missingExpiry
    case expired
    case notYetValid
    case issuedInFuture
    case wrongIssuer
    case wrongAudience

    public var message: String {
        switch self {
        case .malformed(let m): "Malformed token: \(m)."
        case .unknownKey(let m): "Unknown signing key: \(m)."
        case .algorithmMismatch(let t, let k): "Token algorithm \(t) does not match the key's algorithm \(k)."
        case .badSignature: "Invalid token signature."
        case .missingExpiry: "Token has no exp claim."
        case .expired: "Token has expired."
        case .notYetValid: "Token is not valid yet (nbf)."
        case .issuedInFuture: "Token was issued in the future (iat)."
        case .wrongIssuer: "Token issuer is not accepted."
        case .wrongAudience: "Token audience is not accepted."
        }
    }
}

/// Verifies bearer tokens (RFC 7519/7515) for one worker. Keeps a bounded cache of verified
/// tokens keyed by their SHA-256, so a long session is not re-verified (RSA!) per request; an
/// entry lives no longer than its token's `exp`. In front of it, the last token verified (its
/// bytes, compared in constant time): a run of one caller's requests — a keep-alive connection,
/// an SDK's session — costs a comparison, not a digest. Loop thread only (one instance per worker).
public final class JWTVerifier {
    let config: JWTConfiguration
    let ring: JWTKeyRing
    var keys: KeySet
    var generation: Int
    let now: () -> Int64
    private var cache: [TokenDigest: VerifiedIdentity] = [:]
    /// The last token that verified (or hit the cache), and what it said (one object: the
    /// fast path copies one reference).
    private final class LastToken {
        let token: [UInt8]
        let identity: VerifiedIdentity
        init(_ token: [UInt8], _ identity: VerifiedIdentity) { self.token = token; self.identity = identity }
    }
    private var last: LastToken?
    private let digester = SHA256Digester()
    public static let maxTokenBytes = 8192

    public init(config: JWTConfiguration, ring: JWTKeyRing, now: @escaping () -> Int64 = { Int64(WallClock.nowMillis() / 1000) }) {
        self.config = config
        self.ring = ring
        self.now = now
        let snap = ring.snapshot(after: 0) ?? (KeySet(), 0)
        self.keys = snap.0
        self.generation = snap.1
    }

    public var cachedTokens: Int { cache.count }

    public func verify(_ token: String) -> Result<VerifiedIdentity, JWTError> { verify(token[...]) }

    public func verify(_ token: Substring) -> Result<VerifiedIdentity, JWTError> {
        var token = token
        return token.withUTF8 { verify(bytes: UnsafeRawBufferPointer($0)) }
    }

    /// Verifies the token whose bytes are `token` (as received: the request head's bytes, no
    /// String made for a token seen before). Identity values in the result are already checked
    /// to be header-safe (1–256 visible ASCII characters); a tenant that is not is returned as
    /// nil (→ 403).
    public func verify(bytes token: UnsafeRawBufferPointer) -> Result<VerifiedIdentity, JWTError> {
        if let (k, g) = ring.snapshot(after: generation) {  // keys rotated: forget what they verified
            keys = k; generation = g; cache.removeAll(); last = nil
        }
        guard token.count <= JWTVerifier.maxTokenBytes else { return .failure(.malformed("token too long")) }
        let t = now()
        let leeway = Int64(config.leeway.nanoseconds / 1_000_000_000)
        if let l = last, Self.sameBytes(token, l.token) {
            if t <= l.identity.expiresAt + leeway { return .success(l.identity) }
            last = nil                                  // expired: the cache entry goes below
        }
        let digest = digester.digest(token)
        if config.cacheSize > 0, let hit = cache[digest] {
            if t <= hit.expiresAt + leeway {
                last = LastToken(Array(token), hit)
                return .success(hit)
            }
            cache.removeValue(forKey: digest)
            return .failure(.expired)
        }
        let bytes = Array(token)
        let result = verifyUncached(bytes, now: t)
        if case .success(let id) = result, config.cacheSize > 0 {
            remember(digest, id, now: t)
            last = LastToken(bytes, id)
        }
        return result
    }

    /// Whether `a` and `b` are the same bytes; the contents are compared in constant time (every
    /// byte is read whatever differs, eight at a time: no early exit, no data-dependent branch).
    static func sameBytes(_ aa: UnsafeRawBufferPointer, _ b: [UInt8]) -> Bool {
        guard aa.count == b.count, aa.count > 0 else { return false }
        return b.withUnsafeBytes { bb in
            var diff: UInt64 = 0
            var i = 0
            while i + 8 <= aa.count {
                diff |= aa.loadUnaligned(fromByteOffset: i, as: UInt64.self) ^ bb.loadUnaligned(fromByteOffset: i, as: UInt64.self)
                i += 8
            }
            while i < aa.count { diff |= UInt64(aa[i] ^ bb[i]); i += 1 }
            return diff == 0
        }
    }

    private func remember(_ d: TokenDigest, _ id: VerifiedIdentity, now t: Int64) {
        if cache.count >= config.cacheSize {
            cache = cache.filter { $0.value.expiresAt > t }
            if cache.count >= config.cacheSize { cache.removeAll(keepingCapacity: true) }
        }
        cache[d] = id
    }

    func verifyUncached(_ b: [UInt8], now t: Int64) -> Result<VerifiedIdentity, JWTError> {
        guard let d1 = b.firstIndex(of: 46) else { return .failure(.malformed("expected three dot-separated parts")) }
        guard let d2 = b[(d1 + 1)...].firstIndex(of: 46) else { return .failure(.malformed("expected three dot-separated parts")) }
        if b[(d2 + 1)...].contains(46) { return .failure(.malformed("expected three dot-separated parts")) }
        guard d1 > 0, d2 > d1 + 1, d2 + 1 < b.count else { return .failure(.malformed("empty part")) }
        guard let headerBytes = Base64URL.decode(b[0..<d1]) else { return .failure(.malformed("header is not base64url")) }
        let header: JSONObject
        switch Self.jsonObject(headerBytes) {
        case .success(let o): header = o
        case .failure(let why): return .failure(.malformed("header is not a valid JSON object (\(why))"))
        }
        guard let algName = header["alg"]?.string else { return .failure(.malformed("header has no alg")) }
        if header["crit"] != nil { return .failure(.malformed("unsupported crit header")) }
        var kid: String? = nil
        if let k = header["kid"] {
            guard let s = k.string else { return .failure(.malformed("kid is not a string")) }
            kid = s
        }
        guard let key = keys.key(kid: kid) else {
            return .failure(.unknownKey(kid.map { "no key with kid '\(String($0.prefix(64)))'" } ?? "the token has no kid and several keys are configured"))
        }
        guard algName == key.algorithm.rawValue, let alg = JWSAlgorithm(rawValue: algName) else {
            return .failure(.algorithmMismatch(token: String(algName.prefix(16)), key: key.algorithm.rawValue))
        }
        guard let signature = Base64URL.decode(b[(d2 + 1)...]) else { return .failure(.malformed("signature is not base64url")) }
        let valid = b.withUnsafeBytes { raw in
            SignatureVerifier.verify(alg, key: key, signingInput: UnsafeRawBufferPointer(rebasing: raw[0..<d2]), signature: signature)
        }
        guard valid else { return .failure(.badSignature) }
        guard let payloadBytes = Base64URL.decode(b[(d1 + 1)..<d2]) else { return .failure(.malformed("payload is not base64url")) }
        let claims: JSONObject
        switch Self.jsonObject(payloadBytes) {
        case .success(let o): claims = o
        case .failure(let why): return .failure(.malformed("payload is not a valid JSON object (\(why))"))
        }
        return checkClaims(claims, now: t)
    }

    /// A strict JSON object (RFC 7515 §5.2: duplicate member names are refused), or why not.
    static func jsonObject(_ bytes: [UInt8]) -> Result<JSONObject, JSONReader.Failure> {
        do {
            guard case .object(let o) = try JSONReader.parse(bytes) else {
                return .failure(JSONReader.Failure(offset: 0, reason: "not an object"))
            }
            return .success(o)
        } catch { return .failure(error) }
    }

    func checkClaims(_ c: JSONObject, now t: Int64) -> Result<VerifiedIdentity, JWTError> {
        let leeway = Int64(config.leeway.nanoseconds / 1_000_000_000)
        guard let expValue = c["exp"] else { return .failure(.missingExpiry) }
        guard let exp = expValue.number, exp.isFinite else { return .failure(.malformed("exp is not a number")) }
        if Double(t) > exp + Double(leeway) { return .failure(.expired) }
        if let nbfValue = c["nbf"] {
            guard let nbf = nbfValue.number else { return .failure(.malformed("nbf is not a number")) }
            if Double(t) + Double(leeway) < nbf { return .failure(.notYetValid) }
        }
        if let iatValue = c["iat"] {
            guard let iat = iatValue.number else { return .failure(.malformed("iat is not a number")) }
            if iat > Double(t) + Double(leeway) { return .failure(.issuedInFuture) }
        }
        if let iss = config.issuer, c["iss"]?.string != iss { return .failure(.wrongIssuer) }
        if !config.audiences.isEmpty {
            var auds: [String] = []
            switch c["aud"] {
            case .string(let s)?: auds = [s]
            case .array(let a)?: auds = a.compactMap(\.string)
            default: break
            }
            if !auds.contains(where: config.audiences.contains) { return .failure(.wrongAudience) }
        }
        return .success(VerifiedIdentity(tenant: Self.identity(c[config.tenantClaim]),
                                         user: Self.identity(c[config.userClaim]),
                                         tier: Self.identity(c[config.tierClaim]),
                                         expiresAt: Int64(min(exp, 9e15))))
    }

    /// A claim as a header-safe identity value, or nil when absent or unsafe.
    static func identity(_ v: JSONValue?) -> String? {
        guard let s = claimString(v), IdentityValue.isValid(s) else { return nil }
        return s
    }

    static func claimString(_ v: JSONValue?) -> String? {
        switch v {
        case .string(let s)?: return s
        case .numberText? :
            guard let n = v?.number, n == n.rounded(), abs(n) < 1e15 else { return nil }
            return String(Int64(n))
        default: return nil
        }
    }
}

/// SHA-256 of a token: the cache key (the cache never holds tokens themselves).
struct TokenDigest: Hashable {
    let a: UInt64, b: UInt64, c: UInt64, d: UInt64
}

/// SHA-256 with the algorithm fetched once and one reusable context: OpenSSL 3's one-shot
/// `SHA256()` fetches the implementation on every call, which costs more than the hashing.
/// One per `JWTVerifier` (so per worker); loop thread only.
final class SHA256Digester {
    private let md: OpaquePointer?
    private let ctx: OpaquePointer?

    init() {
        md = EVP_MD_fetch(nil, "SHA256", nil)
        ctx = EVP_MD_CTX_new()
    }

    deinit {
        EVP_MD_CTX_free(ctx)
        EVP_MD_free(md)
    }

    func digest(_ bytes: UnsafeRawBufferPointer) -> TokenDigest {
        var out: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        withUnsafeMutableBytes(of: &out) { o in
            var len: UInt32 = 0
            if EVP_DigestInit_ex2(ctx, md, nil) != 1 || EVP_DigestUpdate(ctx, bytes.baseAddress, bytes.count) != 1
                || EVP_DigestFinal_ex(ctx, o.baseAddress?.assumingMemoryBound(to: UInt8.self), &len) != 1 {
                // Cannot happen with a fetched SHA-256; fall back to the one-shot API.
                _ = SHA256(bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), bytes.count,
                           o.baseAddress?.assumingMemoryBound(to: UInt8.self))
            }
        }
        return TokenDigest(a: out.0, b: out.1, c: out.2, d: out.3)
    }
}
