import COpenSSL

/// Checks one JWS signature with OpenSSL. Pure function of its inputs; any thread.
public enum SignatureVerifier {
    public static func verify(_ alg: JWSAlgorithm, key: VerificationKey, signingInput: UnsafeRawBufferPointer,
                              signature: [UInt8]) -> Bool {
        guard key.algorithm == alg else { return false }
        switch key.material {
        case .secret(let secret):
            return hmacMatches(alg, secret: secret, data: signingInput, mac: signature)
        case .publicKey(let pk):
            if let n = alg.ecCoordinateBytes {
                // JWS carries ECDSA as raw r || s; OpenSSL verifies DER. Convert, exact length only.
                guard signature.count == 2 * n, let der = ecdsaDER(signature, coordinate: n) else { return false }
                return digestVerify(alg, pk, signingInput, der)
            }
            return digestVerify(alg, pk, signingInput, signature)
        }
    }

    /// HMAC with a constant-time comparison.
    public static func hmacMatches(_ alg: JWSAlgorithm, secret: [UInt8], data: UnsafeRawBufferPointer, mac: [UInt8]) -> Bool {
        guard let md = alg.digest else { return false }
        var out = [UInt8](repeating: 0, count: 64)
        var len: UInt32 = 0
        let ok = secret.withUnsafeBytes { k in
            out.withUnsafeMutableBufferPointer { o in
                HMAC(md, k.baseAddress, Int32(k.count), data.baseAddress?.assumingMemoryBound(to: UInt8.self), data.count, o.baseAddress, &len) != nil
            }
        }
        guard ok, mac.count == Int(len) else { return false }
        return out.withUnsafeBytes { a in mac.withUnsafeBytes { b in CRYPTO_memcmp(a.baseAddress, b.baseAddress, Int(len)) == 0 } }
    }

    /// SHA-256 of `data` (HMAC request contexts; not on the JWT hot path).
    public static func sha256(_ data: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        data.withUnsafeBufferPointer { d in out.withUnsafeMutableBufferPointer { o in _ = SHA256(d.baseAddress, d.count, o.baseAddress) } }
        return out
    }

    static func hmacSHA256(secret: [UInt8], data: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        var len: UInt32 = 0
        secret.withUnsafeBytes { k in data.withUnsafeBufferPointer { d in out.withUnsafeMutableBufferPointer { o in
            _ = HMAC(EVP_sha256(), k.baseAddress, Int32(k.count), d.baseAddress, d.count, o.baseAddress, &len)
        } } }
        return out
    }

    private static func digestVerify(_ alg: JWSAlgorithm, _ pk: PublicKey, _ data: UnsafeRawBufferPointer, _ sig: [UInt8]) -> Bool {
        guard let ctx = EVP_MD_CTX_new() else { return false }
        defer { EVP_MD_CTX_free(ctx) }
        var pctx: OpaquePointer?
        guard EVP_DigestVerifyInit(ctx, &pctx, alg.digest, nil, pk.pkey) == 1 else { return false }
        if alg == .PS256 {
            guard let p = pctx, EVP_PKEY_CTX_set_rsa_padding(p, pc_RSA_PKCS1_PSS_PADDING()) == 1,
                  EVP_PKEY_CTX_set_rsa_pss_saltlen(p, pc_RSA_PSS_SALTLEN_DIGEST()) == 1 else { return false }
        }
        let r = sig.withUnsafeBufferPointer { s in
            EVP_DigestVerify(ctx, s.baseAddress, s.count, data.baseAddress?.assumingMemoryBound(to: UInt8.self), data.count)
        }
        ERR_clear_error()
        return r == 1
    }

    private static func ecdsaDER(_ raw: [UInt8], coordinate n: Int) -> [UInt8]? {
        guard let sig = ECDSA_SIG_new() else { return nil }
        defer { ECDSA_SIG_free(sig) }
        let r = raw.withUnsafeBufferPointer { BN_bin2bn($0.baseAddress, Int32(n), nil) }
        let s = raw.withUnsafeBufferPointer { p in p.baseAddress.flatMap { BN_bin2bn($0 + n, Int32(n), nil) } }
        guard let r, let s else { BN_free(r); BN_free(s); return nil }
        guard ECDSA_SIG_set0(sig, r, s) == 1 else { BN_free(r); BN_free(s); return nil }  // sig owns r, s now
        let len = i2d_ECDSA_SIG(sig, nil)
        guard len > 0 else { return nil }
        var der = [UInt8](repeating: 0, count: Int(len))
        let written = der.withUnsafeMutableBufferPointer { buf -> Int32 in
            var p: UnsafeMutablePointer<UInt8>? = buf.baseAddress
            return i2d_ECDSA_SIG(sig, &p)
        }
        return written == len ? der : nil
    }
}
