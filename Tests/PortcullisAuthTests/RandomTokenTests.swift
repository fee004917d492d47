import XCTest
import PortcullisConfig
import PortcullisTestSupport
@testable import PortcullisAuth

/// Mutated tokens: every one is refused (the key is HS256 and no mutation re-signs), none crashes.
final class RandomTokenTests: XCTestCase {
    func testMutatedTokensAreRefused() {
        var c = JWTConfiguration(); c.leeway = .seconds(0); c.tenantClaim = "iss"
        let key = VerificationKey(kid: "hs", algorithm: .HS256, material: .secret(Base64URL.decode(JWTVerifierTests.a1Key)!))
        let v = JWTVerifier(config: c, ring: JWTKeyRing(KeySet([key])), now: { JWTVerifierTests.rfcNow })
        let good = Array(JWTVerifierTests.a1.utf8)
        XCTAssertNoThrow(try v.verify(JWTVerifierTests.a1).get())
        var rng = SeededRandom(seed: 42)
        let alphabet = Array("ABCxyz019-_.=+/ {}\"\u{0}".utf8)
        for _ in 0..<5000 {
            let t = mutated(good, alphabet: alphabet, maxEdits: 3, using: &rng)
            if t == good { continue }
            let s = String(decoding: t, as: UTF8.self)
            if case .success = v.verify(s) {
                // Only base64url-equivalent spellings of the same bytes could pass; there are none here.
                XCTFail("mutated token accepted: \(s)")
            }
        }
    }
}
