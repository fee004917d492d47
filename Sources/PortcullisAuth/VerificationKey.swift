import COpenSSL

/// A JWS algorithm this gateway verifies (RFC 7518 §3, RFC 8037).
public enum JWSAlgorithm: String, Sendable, CaseIterable {
    case HS256, HS384, HS512, RS256, RS384, RS512, PS256, ES256, ES384, EdDSA

    var digest: OpaquePointer? {
        switch self {
        case .HS256, .RS256, .PS256, .ES256: EVP_sha256()
        case .HS384, .RS384, .ES384: EVP_sha384()
        case .HS512, .RS512: EVP_sha512()
        case .EdDSA: nil
        }
    }

    var isHMAC: Bool { self == .HS256 || self == .HS384 || self == .HS512 }

    /// Size of one ECDSA coordinate in the JWS raw signature (r || s).
    var ecCoordinateBytes: Int? {
        switch self { case .ES256: 32; case .ES384: 48; default: nil }
    }

    /// Minimum HMAC secret length (RFC 7518 §3.2: at least the hash size).
    var minimumSecretBytes: Int {
        switch self { case .HS256: 32; case .HS384: 48; case .HS512: 64; default: 0 }
    }
}

/// An OpenSSL public key, freed with its owner. Immutable after creation; `EVP_PKEY` is safe to
/// use for verification from several threads at once.
public final class PublicKey: @unchecked Sendable {
    let pkey: OpaquePointer
    init(_ p: OpaquePointer) { pkey = p }
    deinit { EVP_PKEY_free(pkey) }

    var bits: Int { Int(EVP_PKEY_get_bits(pkey)) }
    /// The EC group's short name ("prime256v1", "secp384r1", …); nil for non-EC keys.
    var groupName: String? {
        var buf = [CChar](repeating: 0, count: 64)
        var len = 0
        guard EVP_PKEY_get_group_name(pkey, &buf, buf.count, &len) == 1 else { return nil }
        return String(decoding: buf.prefix(len).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
    var typeName: String {
        guard let n = EVP_PKEY_get0_type_name(pkey) else { return "?" }
        return String(cString: n)
    }
}

/// A key pinned to one algorithm: a token must name exactly this algorithm to be checked with it
/// (no `alg: none`, no HS/RS confusion).
public struct VerificationKey: Sendable {
    public enum Material: Sendable {
        case secret([UInt8])
        case publicKey(PublicKey)
    }
    public let kid: String
    public let algorithm: JWSAlgorithm
    public let material: Material

    public init(kid: String, algorithm: JWSAlgorithm, material: Material) {
        self.kid = kid; self.algorithm = algorithm; self.material = material
    }
}

public struct KeyLoadError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ d: String) { description = d }
}

/// Turns PEM files and JWKs into OpenSSL keys.
public enum KeyMaterial {
    /// A PEM SubjectPublicKeyInfo ("BEGIN PUBLIC KEY"), or the public key of an X.509 certificate.
    public static func publicKey(pem: [UInt8]) -> PublicKey? {
        pem.withUnsafeBytes { raw -> PublicKey? in
            guard let bio = BIO_new_mem_buf(raw.baseAddress, Int32(raw.count)) else { return nil }
            defer { BIO_free(bio) }
            if let k = PEM_read_bio_PUBKEY(bio, nil, nil, nil) { return PublicKey(k) }
            _ = pc_BIO_reset(bio)
            if let x = PEM_read_bio_X509(bio, nil, nil, nil) {
                defer { X509_free(x) }
                if let k = X509_get_pubkey(x) { return PublicKey(k) }
            }
            return nil
        }
    }

    /// An RSA public key from a JWK's base64url `n` and `e`.
    public static func rsa(n: [UInt8], e: [UInt8]) -> PublicKey? {
        guard let bld = OSSL_PARAM_BLD_new() else { return nil }
        defer { OSSL_PARAM_BLD_free(bld) }
        let bn = n.withUnsafeBufferPointer { BN_bin2bn($0.baseAddress, Int32($0.count), nil) }
        let be = e.withUnsafeBufferPointer { BN_bin2bn($0.baseAddress, Int32($0.count), nil) }
        defer { BN_free(bn); BN_free(be) }
        guard let bn, let be, OSSL_PARAM_BLD_push_BN(bld, pc_param_rsa_n(), bn) == 1,
              OSSL_PARAM_BLD_push_BN(bld, pc_param_rsa_e(), be) == 1 else { return nil }
        return fromParams(bld, type: "RSA")
    }

    /// An EC public key from a JWK's curve name and coordinates.
    public static func ec(curve: String, x: [UInt8], y: [UInt8]) -> PublicKey? {
        let (group, size): (UnsafePointer<CChar>?, Int)
        switch curve {
        case "P-256": (group, size) = (pc_group_p256(), 32)
        case "P-384": (group, size) = (pc_group_p384(), 48)
        default: return nil
        }
        guard x.count == size, y.count == size, let bld = OSSL_PARAM_BLD_new() else { return nil }
        defer { OSSL_PARAM_BLD_free(bld) }
        let point: [UInt8] = [4] + x + y
        // The builder keeps `point`'s address until to_param: build the key inside the closure.
        return point.withUnsafeBytes { p -> PublicKey? in
            guard OSSL_PARAM_BLD_push_utf8_string(bld, pc_param_group(), group, 0) == 1,
                  OSSL_PARAM_BLD_push_octet_string(bld, pc_param_pub(), p.baseAddress, p.count) == 1 else { return nil }
            return fromParams(bld, type: "EC")
        }
    }

    /// An Ed25519 public key from its 32 raw bytes (JWK `x`, RFC 8037).
    public static func ed25519(x: [UInt8]) -> PublicKey? {
        guard x.count == 32 else { return nil }
        return x.withUnsafeBufferPointer { p in
            EVP_PKEY_new_raw_public_key(pc_EVP_PKEY_ED25519(), nil, p.baseAddress, p.count).map(PublicKey.init)
        }
    }

    private static func fromParams(_ bld: OpaquePointer, type: String) -> PublicKey? {
        guard let params = OSSL_PARAM_BLD_to_param(bld) else { return nil }
        defer { OSSL_PARAM_free(params) }
        guard let ctx = EVP_PKEY_CTX_new_from_name(nil, type, nil) else { return nil }
        defer { EVP_PKEY_CTX_free(ctx) }
        var pkey: OpaquePointer?
        guard EVP_PKEY_fromdata_init(ctx) == 1,
              EVP_PKEY_fromdata(ctx, &pkey, pc_EVP_PKEY_PUBLIC_KEY(), params) == 1, let k = pkey else { return nil }
        return PublicKey(k)
    }

    /// Checks that a public key can serve `alg` (RSA ≥ 2048 bits for RS/PS; the right curve for ES).
    static func check(_ key: PublicKey, for alg: JWSAlgorithm) -> String? {
        let type = key.typeName
        switch alg {
        case .RS256, .RS384, .RS512, .PS256:
            if type != "RSA" && type != "RSA-PSS" { return "\(alg.rawValue) needs an RSA key, found \(type)" }
            if key.bits < 2048 { return "RSA keys must have at least 2048 bits, found \(key.bits)" }
        case .ES256, .ES384:
            if type != "EC" { return "\(alg.rawValue) needs an EC key, found \(type)" }
            // The named curve, not just its size: secp256k1 and brainpoolP256r1 are 256-bit too.
            let want = alg == .ES256 ? "prime256v1" : "secp384r1"
            let curve = key.groupName ?? "unknown"
            if curve != want {
                return "\(alg.rawValue) needs a P-\(alg == .ES256 ? 256 : 384) key, found curve \(curve)"
            }
        case .EdDSA:
            if type != "ED25519" { return "EdDSA needs an Ed25519 key, found \(type)" }
        case .HS256, .HS384, .HS512:
            return "\(alg.rawValue) needs a shared secret, not a public key"
        }
        return nil
    }
}
