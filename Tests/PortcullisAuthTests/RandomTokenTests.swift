import XCTest
import PortcullisConfig
@testable import PortcullisAuth

/// Mutated tokens: every one is refused (the key is HS256 and no mutation re-signs), none crashes.
final class RandomTokenTests: XCTestCase {
    func testMutatedTokensAreRefused() {
        var c = JWTConfiguration(); c.leeway = .seconds(0); c.tenantClaim = "iss"
        let key = VerificationKey(kid: "hs", algorithm: .HS256, material: .secret(Base64URL.decode(JWTVerifierTests.a1Key)!))
        let v = JWTVerifier(config: c, ring: JWTKeyRing(KeySet([key])), now: { JWTVerifierTests.rfcNow })
        let good = Array(JWTVerifierTests.a1.utf8)
        XCTAssertNoThrow(try v.verify(JWTVerifierTests.a1).get())
        var state: UInt64 = 42
        func rnd(_ n: Int) -> Int {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Int((state >> 33) % UInt64(n))
        }
        let alphabet = Array("ABCxyz019-_.=+/ {}\"\u{0}".utf8)
        for _ in 0..<5000 {
            var t = good
            for _ in 0...rnd(3) {
                let i = rnd(t.count)
                switch rnd(3) {
                case 0: t[i] = alphabet[rnd(alphabet.count)]
                case 1: t.remove(at: i)
                default: t.insert(alphabet[rnd(alphabet.count)], at: i)
                }
            }
            if t == good { continue }
            let s = String(decoding: t, as: UTF8.self)
            if case .success = v.verify(s) {
                // Only base64url-equivalent spellings of the same bytes could pass; there are none here.
                XCTFail("mutated token accepted: \(s)")
            }
        }
    }
}
