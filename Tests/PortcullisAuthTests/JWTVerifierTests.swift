import XCTest
import PortcullisConfig
import PortcullisCore
@testable import PortcullisAuth

/// JWT verification against the RFC 7515 / RFC 8037 known-answer vectors, and every rejection path.
final class JWTVerifierTests: XCTestCase {
    // RFC 7515 Appendix A.1 (HS256): key, and the JWS (exp 1300819380).
    static let a1Key = "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"
    static let a1 = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    // RFC 7515 Appendix A.2 (RS256).
    static let a2n = "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ"
    static let a2 = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw"
    // RFC 7515 Appendix A.3 (ES256).
    static let a3x = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU"
    static let a3y = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"
    static let a3 = "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q"
    // RFC 8037 Appendix A.4 (Ed25519); its payload is not a claim set, so only the signature is checked.
    static let edx = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
    static let ed = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
    static let rfcNow: Int64 = 1300819370  // ten seconds before the vectors expire

    func verifier(_ keys: [VerificationKey], now: Int64 = rfcNow, configure: (inout JWTConfiguration) -> Void = { _ in }) -> JWTVerifier {
        var c = JWTConfiguration()
        c.leeway = .seconds(0)
        c.tenantClaim = "iss"   // the RFC claim sets have no tenant; use iss as one
        configure(&c)
        return JWTVerifier(config: c, ring: JWTKeyRing(KeySet(keys)), now: { now })
    }

    var hsKey: VerificationKey { VerificationKey(kid: "hs", algorithm: .HS256, material: .secret(Base64URL.decode(Self.a1Key)!)) }
    var rsKey: VerificationKey {
        VerificationKey(kid: "rs", algorithm: .RS256, material: .publicKey(KeyMaterial.rsa(n: Base64URL.decode(Self.a2n)!, e: Base64URL.decode("AQAB")!)!))
    }
    var esKey: VerificationKey {
        VerificationKey(kid: "es", algorithm: .ES256, material: .publicKey(KeyMaterial.ec(curve: "P-256", x: Base64URL.decode(Self.a3x)!, y: Base64URL.decode(Self.a3y)!)!))
    }

    func expectFailure(_ v: JWTVerifier, _ token: String, _ expected: JWTError, file: StaticString = #filePath, line: UInt = #line) {
        switch v.verify(token) {
        case .success(let id): XCTFail("accepted: \(id)", file: file, line: line)
        case .failure(let e): XCTAssertEqual(e, expected, file: file, line: line)
        }
    }

    func expectMalformed(_ v: JWTVerifier, _ token: String, file: StaticString = #filePath, line: UInt = #line) {
        guard case .failure(.malformed) = v.verify(token) else { return XCTFail("\(token.prefix(40)): \(v.verify(token))", file: file, line: line) }
    }

    // MARK: known answers

    func testRFC7515_A1_HS256() throws {
        let id = try verifier([hsKey]).verify(Self.a1).get()
        XCTAssertEqual(id.tenant, "joe")
        XCTAssertEqual(id.expiresAt, 1300819380)
    }

    func testRFC7515_A2_RS256() throws {
        XCTAssertEqual(try verifier([rsKey]).verify(Self.a2).get().tenant, "joe")
    }

    func testRFC7515_A3_ES256() throws {
        XCTAssertEqual(try verifier([esKey]).verify(Self.a3).get().tenant, "joe")
    }

    func testRFC8037_A4_Ed25519Signature() throws {
        let key = VerificationKey(kid: "ed", algorithm: .EdDSA, material: .publicKey(try XCTUnwrap(KeyMaterial.ed25519(x: Base64URL.decode(Self.edx)!))))
        let parts = Self.ed.split(separator: ".")
        let input = Array((parts[0] + "." + parts[1]).utf8)
        let sig = try XCTUnwrap(Base64URL.decode(String(parts[2])))
        XCTAssertTrue(input.withUnsafeBytes { SignatureVerifier.verify(.EdDSA, key: key, signingInput: $0, signature: sig) })
        var bad = sig; bad[0] ^= 1
        XCTAssertFalse(input.withUnsafeBytes { SignatureVerifier.verify(.EdDSA, key: key, signingInput: $0, signature: bad) })
        // Through the verifier the signature passes and the payload is rejected (not a claim set).
        expectMalformed(verifier([key]), Self.ed)
    }

    func testBase64URL() {
        XCTAssertEqual(Base64URL.decode("eyJhbGciOiJSUzI1NiJ9").map { String(decoding: $0, as: UTF8.self) }, "{\"alg\":\"RS256\"}")
        XCTAssertEqual(Base64URL.encode(Array("{\"alg\":\"RS256\"}".utf8)), "eyJhbGciOiJSUzI1NiJ9")
        XCTAssertNil(Base64URL.decode("ab+c"))
        XCTAssertNil(Base64URL.decode("abc="))
        XCTAssertNil(Base64URL.decode("a"))
        XCTAssertEqual(Base64URL.decode(""), [])
        XCTAssertEqual(Base64.decode("aGVsbG8="), Array("hello".utf8))
        XCTAssertNil(Base64.decode("aGVsbG8"))
    }

    // MARK: rejections

    func testExpiredAndLeeway() {
        expectFailure(verifier([hsKey], now: 1300819381), Self.a1, .expired)
        XCTAssertNoThrow(try verifier([hsKey], now: 1300819381) { $0.leeway = .seconds(30) }.verify(Self.a1).get())
    }

    func testTamperedSignatureAndPayload() {
        var t = Array(Self.a1)
        t[t.count - 2] = t[t.count - 2] == "a" ? "b" : "a"
        expectFailure(verifier([hsKey]), String(t), .badSignature)
        let parts = Self.a2.split(separator: ".")
        let forgedPayload = Base64URL.encode(Array("{\"iss\":\"mallory\",\"exp\":1300819380}".utf8))
        expectFailure(verifier([rsKey]), "\(parts[0]).\(forgedPayload).\(parts[2])", .badSignature)
    }

    func testAlgorithmIsPinnedByTheKey() {
        // alg=none
        let none = Base64URL.encode(Array("{\"alg\":\"none\"}".utf8)) + "." + Self.a1.split(separator: ".")[1] + "."
        guard case .failure = verifier([hsKey]).verify(none) else { return XCTFail("alg=none accepted") }
        // HS/RS confusion: an HS256 token "signed" with the RSA key's bytes, presented to an RS256 key.
        let header = Base64URL.encode(Array("{\"alg\":\"HS256\"}".utf8))
        let payload = Self.a1.split(separator: ".")[1]
        expectFailure(verifier([rsKey]), "\(header).\(payload).AAAA", .algorithmMismatch(token: "HS256", key: "RS256"))
        // ES256 token against an RS256 key
        guard case .failure(.algorithmMismatch) = verifier([rsKey]).verify(Self.a3) else { return XCTFail() }
    }

    func testKeySelectionByKid() {
        let twoKeys = verifier([hsKey, rsKey])
        guard case .failure(.unknownKey) = twoKeys.verify(Self.a1) else { return XCTFail("no kid with two keys must be refused") }
        let header = Base64URL.encode(Array("{\"alg\":\"HS256\",\"kid\":\"nope\"}".utf8))
        guard case .failure(.unknownKey) = twoKeys.verify("\(header).e30.AAAA") else { return XCTFail() }
    }

    func testMalformedTokens() {
        let v = verifier([hsKey])
        for t in ["", ".", "..", "a.b", "a.b.c.d", "!!!.e30.AAAA", "e30.e30.AAAA", "bnVsbA.e30.AAAA",
                  Self.a1 + ".", "e30..AAAA", String(repeating: "a", count: 9000)] {
            guard case .failure = v.verify(t) else { return XCTFail("accepted \(t.prefix(30))") }
        }
        let crit = Base64URL.encode(Array("{\"alg\":\"HS256\",\"crit\":[\"x\"]}".utf8))
        expectMalformed(v, "\(crit).e30.AAAA")
    }

    func testClaimsRules() throws {
        func hs(_ claims: String) -> String {
            let h = Base64URL.encode(Array("{\"alg\":\"HS256\"}".utf8)), p = Base64URL.encode(Array(claims.utf8))
            let input = Array("\(h).\(p)".utf8)
            let mac = hmac(Base64URL.decode(Self.a1Key)!, input)
            return "\(h).\(p).\(Base64URL.encode(mac))"
        }
        let base = verifier([hsKey]) { $0.tenantClaim = "tenant_id"; $0.issuer = "https://auth.example.com"; $0.audiences = ["portcullis"] }
        let good = "{\"tenant_id\":\"acme\",\"sub\":\"u1\",\"tier\":\"pro\",\"iss\":\"https://auth.example.com\",\"aud\":[\"x\",\"portcullis\"],\"exp\":1300819400}"
        XCTAssertEqual(try base.verify(hs(good)).get(), VerifiedIdentity(tenant: "acme", user: "u1", tier: "pro", expiresAt: 1300819400))
        expectFailure(base, hs("{\"tenant_id\":\"acme\",\"iss\":\"https://auth.example.com\",\"aud\":\"portcullis\"}"), .missingExpiry)
        expectFailure(base, hs("{\"iss\":\"https://evil\",\"aud\":\"portcullis\",\"exp\":1300819400}"), .wrongIssuer)
        expectFailure(base, hs("{\"iss\":\"https://auth.example.com\",\"aud\":\"other\",\"exp\":1300819400}"), .wrongAudience)
        expectFailure(base, hs("{\"iss\":\"https://auth.example.com\",\"exp\":1300819400}"), .wrongAudience)
        expectFailure(base, hs("{\"iss\":\"https://auth.example.com\",\"aud\":\"portcullis\",\"exp\":1300819400,\"nbf\":1300819390}"), .notYetValid)
        expectFailure(base, hs("{\"iss\":\"https://auth.example.com\",\"aud\":\"portcullis\",\"exp\":1300819400,\"iat\":1300819390}"), .issuedInFuture)
        expectMalformed(base, hs("{\"exp\":\"soon\"}"))
        // A numeric tenant claim is accepted as its decimal text; a missing one yields nil (→ 403 upstream of this).
        let numeric = try base.verify(hs("{\"tenant_id\":42,\"iss\":\"https://auth.example.com\",\"aud\":\"portcullis\",\"exp\":1300819400}")).get()
        XCTAssertEqual(numeric.tenant, "42")
        XCTAssertNil(try base.verify(hs("{\"iss\":\"https://auth.example.com\",\"aud\":\"portcullis\",\"exp\":1300819400}")).get().tenant)
    }

    func testCacheHonoursExpiryAndRotation() throws {
        var now: Int64 = Self.rfcNow
        var c = JWTConfiguration(); c.leeway = .seconds(0); c.tenantClaim = "iss"
        let ring = JWTKeyRing(KeySet([hsKey]))
        let v = JWTVerifier(config: c, ring: ring, now: { now })
        XCTAssertNoThrow(try v.verify(Self.a1).get())
        XCTAssertEqual(v.cachedTokens, 1)
        XCTAssertNoThrow(try v.verify(Self.a1).get())   // from the cache
        now = 1300819381
        expectFailure(v, Self.a1, .expired)              // the cache honours exp
        XCTAssertEqual(v.cachedTokens, 0)
        now = Self.rfcNow
        // Rotation: the ring moves to a key set without the HS key → the cached entry is dropped too.
        XCTAssertNoThrow(try v.verify(Self.a1).get())
        var jc = JWTConfiguration(); jc.keys = []
        jc.jwksFile = writeTemp("{\"keys\":[]}")
        guard case .success = ring.reload(jc, environment: [:]) else { return XCTFail("reload failed") }
        guard case .failure(.unknownKey) = v.verify(Self.a1) else { return XCTFail("rotated-out key still accepted") }
    }

    /// The last verified token is remembered whole: a token that differs in one byte, is a
    /// prefix of it or extends it is verified on its own, and the remembered one still expires.
    func testLastTokenIsComparedWhole() throws {
        var now: Int64 = Self.rfcNow
        var c = JWTConfiguration(); c.leeway = .seconds(0); c.tenantClaim = "iss"
        let v = JWTVerifier(config: c, ring: JWTKeyRing(KeySet([hsKey])), now: { now })
        XCTAssertNoThrow(try v.verify(Self.a1).get())
        XCTAssertNoThrow(try v.verify(Self.a1).get())                    // the last token again
        var u = Array(Self.a1.utf8)
        u[u.count - 2] = u[u.count - 2] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
        expectFailure(v, String(decoding: u, as: UTF8.self), .badSignature)     // same length, one byte off
        XCTAssertNoThrow(try v.verify(Self.a1).get())
        guard case .failure = v.verify(String(Self.a1.dropLast())) else { return XCTFail("a prefix of the last token accepted") }
        guard case .failure = v.verify(Self.a1 + "A") else { return XCTFail("an extension of the last token accepted") }
        XCTAssertNoThrow(try v.verify(Self.a1).get())
        now = 1300819381
        expectFailure(v, Self.a1, .expired)
        expectFailure(v, Self.a1, .expired)
    }

    /// The constant-time comparison sees a difference at every position, in the 8-byte words
    /// and in the tail, and refuses different lengths.
    func testSameBytesFindsEveryDifference() {
        for n in 1...20 {
            let a = (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
            a.withUnsafeBytes { XCTAssertTrue(JWTVerifier.sameBytes($0, a)) }
            for i in 0..<n {
                var b = a
                b[i] ^= 0x01
                a.withUnsafeBytes { XCTAssertFalse(JWTVerifier.sameBytes($0, b), "n \(n), byte \(i)") }
            }
            a.withUnsafeBytes { XCTAssertFalse(JWTVerifier.sameBytes($0, a + [0])) }
        }
    }

    func testCacheIsBounded() throws {
        var c = JWTConfiguration(); c.leeway = .seconds(0); c.tenantClaim = "tenant_id"; c.cacheSize = 8
        let key = Base64URL.decode(Self.a1Key)!
        let v = JWTVerifier(config: c, ring: JWTKeyRing(KeySet([hsKey])), now: { Self.rfcNow })
        for i in 0..<50 {
            let h = Base64URL.encode(Array("{\"alg\":\"HS256\"}".utf8))
            let p = Base64URL.encode(Array("{\"tenant_id\":\"t\(i)\",\"exp\":1300819400}".utf8))
            let mac = hmac(key, Array("\(h).\(p)".utf8))
            XCTAssertEqual(try v.verify("\(h).\(p).\(Base64URL.encode(mac))").get().tenant, "t\(i)")
            XCTAssertLessThanOrEqual(v.cachedTokens, 8)
        }
    }

    // MARK: key loading

    func testJWKSLoading() throws {
        let jwks = """
        {"keys":[
          {"kty":"RSA","kid":"r1","n":"\(Self.a2n)","e":"AQAB"},
          {"kty":"EC","kid":"e1","crv":"P-256","x":"\(Self.a3x)","y":"\(Self.a3y)"},
          {"kty":"OKP","kid":"o1","crv":"Ed25519","x":"\(Self.edx)"},
          {"kty":"RSA","kid":"enc","use":"enc","n":"\(Self.a2n)","e":"AQAB"}
        ]}
        """
        let keys = try KeySetLoader.parseJWKS(Array(jwks.utf8), origin: "test")
        XCTAssertEqual(keys.map(\.kid), ["r1", "e1", "o1"])
        XCTAssertEqual(keys.map(\.algorithm), [.RS256, .ES256, .EdDSA])
        let v = verifier(keys)
        // The RFC token has no kid; with three keys it must name one.
        guard case .failure(.unknownKey) = v.verify(Self.a2) else { return XCTFail() }
        XCTAssertThrowsError(try KeySetLoader.parseJWKS(Array("{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"x\",\"n\":\"AQAB\",\"e\":\"AQAB\"}]}".utf8), origin: "t"))
        XCTAssertThrowsError(try KeySetLoader.parseJWKS(Array("not json".utf8), origin: "t"))
        XCTAssertThrowsError(try KeySetLoader.parseJWKS(Array("{\"keys\":[{\"kty\":\"oct\",\"kid\":\"x\",\"k\":\"AQAB\"}]}".utf8), origin: "t"))
    }

    func testKeyLoadErrorsNameTheKey() {
        var c = JWTConfiguration()
        c.keys = [JWTKeyConfiguration(kid: "hs1", alg: "HS256", secretEnv: "JWT_SECRET", secretFile: nil, publicKeyFile: nil,
                                      file: "p.yaml", mark: SourceMark(line: 4, column: 9), path: "auth.jwt.keys[0]")]
        XCTAssertThrowsError(try KeySetLoader.load(c, environment: [:])) { e in
            XCTAssertTrue("\(e)".hasPrefix("p.yaml:4:9: auth.jwt.keys[0]: environment variable JWT_SECRET is not set"), "\(e)")
        }
        XCTAssertThrowsError(try KeySetLoader.load(c, environment: ["JWT_SECRET": "short"])) { e in
            XCTAssertTrue("\(e)".contains("at least 32 bytes"), "\(e)")
            XCTAssertFalse("\(e)".contains("short"), "a secret leaked into an error message")
        }
        XCTAssertEqual(try KeySetLoader.load(c, environment: ["JWT_SECRET": String(repeating: "k", count: 32)]).count, 1)
    }

    func hmac(_ key: [UInt8], _ data: [UInt8]) -> [UInt8] { SignatureVerifier.hmacSHA256(secret: key, data: data) }

    func writeTemp(_ text: String) -> String {
        let path = "/tmp/portcullis-auth-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).json"
        let f = fopen(path, "w")!
        fputs(text, f); fclose(f)
        return path
    }
}
