import PortcullisCore
import PortcullisJSON
import PortcullisConfig
#if canImport(Glibc)
import Glibc
#endif

/// The verification keys of one configuration generation, by kid.
public struct KeySet: Sendable {
    public var keys: [String: VerificationKey] = [:]
    public init(_ list: [VerificationKey] = []) { for k in list { keys[k.kid] = k } }
    public var count: Int { keys.count }
    /// The key for a token: by `kid`, or the only key when the token names none.
    public func key(kid: String?) -> VerificationKey? {
        if let kid { return keys[kid] }
        return keys.count == 1 ? keys.values.first : nil
    }
}

/// Reads keys from the environment, secret files, PEM files and a JWKS file. Runs at start-up,
/// in `portcullis check`, and on reload (SIGHUP) — never on the request path.
public enum KeySetLoader {
    public static func load(_ config: JWTConfiguration, environment: [String: String]) throws(KeyLoadError) -> KeySet {
        var out: [VerificationKey] = []
        for k in config.keys {
            let at = "\(k.file):\(k.mark.line):\(k.mark.column): \(k.path)"
            guard let alg = JWSAlgorithm(rawValue: k.alg) else { throw KeyLoadError("\(at): unsupported algorithm \(k.alg)") }
            if alg.isHMAC {
                var secret: [UInt8]
                if let env = k.secretEnv {
                    guard let v = environment[env], !v.isEmpty else { throw KeyLoadError("\(at): environment variable \(env) is not set") }
                    secret = Array(v.utf8)
                } else if let name = k.secretFile {
                    let f = CredentialFile.resolve(name, environment: environment)
                    guard let bytes = FileReader.bytes(f, limit: 4 << 20) else { throw KeyLoadError("\(at): cannot read secret_file \(f)") }
                    secret = bytes
                    while let last = secret.last, last == 10 || last == 13 { secret.removeLast() }  // trailing newline
                } else {
                    throw KeyLoadError("\(at): \(alg.rawValue) needs secret_env or secret_file")
                }
                guard secret.count >= alg.minimumSecretBytes else {
                    throw KeyLoadError("\(at): the \(alg.rawValue) secret must be at least \(alg.minimumSecretBytes) bytes, found \(secret.count)")
                }
                out.append(VerificationKey(kid: k.kid, algorithm: alg, material: .secret(secret)))
            } else {
                let f = CredentialFile.resolve(k.publicKeyFile ?? "", environment: environment)
                guard k.publicKeyFile != nil, let pem = FileReader.bytes(f, limit: 4 << 20) else {
                    throw KeyLoadError("\(at): cannot read public_key_file \(f)")
                }
                guard let pk = KeyMaterial.publicKey(pem: pem) else { throw KeyLoadError("\(at): \(f) holds no PEM public key or certificate") }
                if let problem = KeyMaterial.check(pk, for: alg) { throw KeyLoadError("\(at): \(problem)") }
                out.append(VerificationKey(kid: k.kid, algorithm: alg, material: .publicKey(pk)))
            }
        }
        if let name = config.jwksFile {
            let jwks = CredentialFile.resolve(name, environment: environment)
            let at = "\(jwks): auth.jwt.jwks_file"
            guard let bytes = FileReader.bytes(jwks, limit: 4 << 20) else { throw KeyLoadError("\(at): cannot read the file") }
            for key in try parseJWKS(bytes, origin: at) where !out.contains(where: { $0.kid == key.kid }) {
                out.append(key)
            }
        }
        return KeySet(out)
    }

    /// RSA, EC (P-256, P-384) and OKP (Ed25519) public JWKs with a `kid`. A JWK without `alg`
    /// gets the one its type implies (RSA → RS256, P-256 → ES256, P-384 → ES384, Ed25519 → EdDSA).
    public static func parseJWKS(_ bytes: [UInt8], origin: String) throws(KeyLoadError) -> [VerificationKey] {
        guard let doc = JSONValue.object(from: bytes), case .array(let list)? = doc["keys"] else {
            throw KeyLoadError("\(origin): not a JWKS document (expected {\"keys\": [...]})")
        }
        var out: [VerificationKey] = []
        for (i, item) in list.enumerated() {
            guard case .object(let jwk) = item else { throw KeyLoadError("\(origin): keys[\(i)] is not an object") }
            guard let kid = jwk["kid"]?.string else { throw KeyLoadError("\(origin): keys[\(i)] has no kid") }
            if let use = jwk["use"]?.string, use != "sig" { continue }
            let kty = jwk["kty"]?.string ?? ""
            func b64(_ name: String) throws(KeyLoadError) -> [UInt8] {
                guard let s = jwk[name]?.string, let v = Base64URL.decode(s) else {
                    throw KeyLoadError("\(origin): key \(kid): missing or invalid '\(name)'")
                }
                return v
            }
            var alg: JWSAlgorithm
            var pk: PublicKey?
            switch kty {
            case "RSA":
                alg = .RS256
                pk = KeyMaterial.rsa(n: try b64("n"), e: try b64("e"))
            case "EC":
                let crv = jwk["crv"]?.string ?? ""
                alg = crv == "P-384" ? .ES384 : .ES256
                pk = KeyMaterial.ec(curve: crv, x: try b64("x"), y: try b64("y"))
            case "OKP":
                guard jwk["crv"]?.string == "Ed25519" else { throw KeyLoadError("\(origin): key \(kid): only the Ed25519 OKP curve is supported") }
                alg = .EdDSA
                pk = KeyMaterial.ed25519(x: try b64("x"))
            default:
                throw KeyLoadError("\(origin): key \(kid): unsupported kty '\(kty)'")
            }
            if let a = jwk["alg"]?.string {
                guard let named = JWSAlgorithm(rawValue: a), !named.isHMAC else {
                    throw KeyLoadError("\(origin): key \(kid): unsupported alg '\(a)'")
                }
                alg = named
            }
            guard let key = pk else { throw KeyLoadError("\(origin): key \(kid): invalid \(kty) key material") }
            if let problem = KeyMaterial.check(key, for: alg) { throw KeyLoadError("\(origin): key \(kid): \(problem)") }
            out.append(VerificationKey(kid: kid, algorithm: alg, material: .publicKey(key)))
        }
        return out
    }
}
