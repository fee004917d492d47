import XCTest
import PortcullisConfig
import PortcullisCore
@testable import PortcullisAuth

/// RFC 7515 strictness: duplicate member names, canonical base64url, named curves.
final class JOSEStrictnessTests: XCTestCase {
    let secret = Array(repeating: UInt8(ascii: "k"), count: 32)

    func verifier() -> JWTVerifier {
        var c = JWTConfiguration()
        c.leeway = .seconds(0)
        let key = VerificationKey(kid: "hs", algorithm: .HS256, material: .secret(secret))
        return JWTVerifier(config: c, ring: JWTKeyRing(KeySet([key])), now: { 1_000 })
    }

    func token(header: String, claims: String) -> String {
        let h = Base64URL.encode(Array(header.utf8)), p = Base64URL.encode(Array(claims.utf8))
        let mac = SignatureVerifier.hmacSHA256(secret: secret, data: Array("\(h).\(p)".utf8))
        return "\(h).\(p).\(Base64URL.encode(mac))"
    }

    func testSignedTokenIsAccepted() throws {
        let id = try verifier().verify(token(header: "{\"alg\":\"HS256\"}", claims: "{\"tenant_id\":\"acme\",\"exp\":2000}")).get()
        XCTAssertEqual(id.tenant, "acme")
    }

    func testDuplicateHeaderMembersAreRefused() {
        let t = token(header: "{\"alg\":\"HS256\",\"alg\":\"none\"}", claims: "{\"tenant_id\":\"acme\",\"exp\":2000}")
        guard case .failure(.malformed(let m)) = verifier().verify(t) else { return XCTFail("duplicate alg accepted") }
        XCTAssertTrue(m.contains("duplicate member name 'alg'"), m)
    }

    func testDuplicateClaimsAreRefused() {
        // A properly signed token whose tenant reads differently to a first-wins and a last-wins parser.
        let t = token(header: "{\"alg\":\"HS256\"}", claims: "{\"tenant_id\":\"acme\",\"exp\":2000,\"tenant_id\":\"globex\"}")
        guard case .failure(.malformed(let m)) = verifier().verify(t) else { return XCTFail("duplicate tenant_id accepted") }
        XCTAssertTrue(m.contains("duplicate member name 'tenant_id'"), m)
    }

    func testNonCanonicalSignatureEncodingIsRefused() throws {
        let good = token(header: "{\"alg\":\"HS256\"}", claims: "{\"tenant_id\":\"acme\",\"exp\":2000}")
        XCTAssertNoThrow(try verifier().verify(good).get())
        // 32 bytes → 43 characters: the last one carries 2 unused bits. Setting one of them spells
        // the same bytes differently; it must not verify.
        var chars = Array(good.utf8)
        let last = chars[chars.count - 1]
        let sextet = Base64URL.sextet(last)
        XCTAssertEqual(sextet & 3, 0)
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
        chars[chars.count - 1] = alphabet[Int(sextet | 1)]
        guard case .failure(.malformed) = verifier().verify(String(decoding: chars, as: UTF8.self)) else {
            return XCTFail("non-canonical signature accepted")
        }
        XCTAssertNil(Base64URL.decode("QR"))   // 'R' has low bits set: 1 byte + 4 non-zero bits
        XCTAssertEqual(Base64URL.decode("QQ"), [0x41])
        XCTAssertNil(Base64URL.decode("QUJ"))  // 'J' has low bits set
        XCTAssertEqual(Base64URL.decode("QUI"), [0x41, 0x42])
    }

    func testECKeysMustBeOnTheNamedCurve() throws {
        let secp256k1 = """
        -----BEGIN PUBLIC KEY-----
        MFYwEAYHKoZIzj0CAQYFK4EEAAoDQgAE4L6JUJDEOxdatWejSjCX46AYQROrMeZz
        0P6Y5P/ynmGFcFQ15koQQMnNh9KG+4OLEr9RwJrnI5MZM1zPR9/KFA==
        -----END PUBLIC KEY-----
        """
        let brainpool = """
        -----BEGIN PUBLIC KEY-----
        MFowFAYHKoZIzj0CAQYJKyQDAwIIAQEHA0IABKF2O48p/OYN+GaBUGL0QzkvkRGl
        Tu5Ehx3igIPzg3o6lFNRHkaeVFiC9A60oJ/zlHUYzjwtZbE8lIJaH6+CMCA=
        -----END PUBLIC KEY-----
        """
        for pem in [secp256k1, brainpool] {
            let key = try XCTUnwrap(KeyMaterial.publicKey(pem: Array(pem.utf8)))
            XCTAssertEqual(key.bits, 256)
            let problem = KeyMaterial.check(key, for: .ES256)
            XCTAssertNotNil(problem, "a 256-bit non-P-256 curve was accepted for ES256")
            XCTAssertTrue(problem?.contains("needs a P-256 key") == true, problem ?? "")
        }
        let p256 = try XCTUnwrap(KeyMaterial.ec(curve: "P-256", x: Base64URL.decode(JWTVerifierTests.a3x)!,
                                                y: Base64URL.decode(JWTVerifierTests.a3y)!))
        XCTAssertNil(KeyMaterial.check(p256, for: .ES256))
        XCTAssertNotNil(KeyMaterial.check(p256, for: .ES384))
    }
}
