import CLinux
import PortcullisCore
#if canImport(Glibc)
import Glibc
#endif

/// Request ids: keep a client's `X-Request-Id` when it is sane, else mint 128 bits (shown as 32
/// hex digits) from a per-worker xoshiro256** generator seeded from the kernel (no syscall per
/// request).
/// One instance per worker; loop thread only.
final class RequestIDGenerator {
    private var s: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)

    init() {
        var seed = [UInt64](repeating: 0, count: 4)
        var r = SystemRandomNumberGenerator()
        for i in 0..<4 { seed[i] = r.next() }
        s = (seed[0] | 1, seed[1], seed[2], seed[3])
    }

    private func next() -> UInt64 {
        let result = rotl(s.1 &* 5, 7) &* 9
        let t = s.1 << 17
        s.2 ^= s.0; s.3 ^= s.1; s.1 ^= s.2; s.0 ^= s.3
        s.2 ^= t
        s.3 = rotl(s.3, 45)
        return result
    }

    private func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }

    func make() -> RequestID {
        let a = next(), b = next()
        return RequestID(high: a, low: b)
    }

    /// A client-supplied id is kept only if it is 1–128 chars of [A-Za-z0-9._:-].
    static func isValid(_ id: String) -> Bool {
        let u = id.utf8
        guard !u.isEmpty, u.count <= 128 else { return false }
        for c in u {
            switch c {
            case 48...57, 65...90, 97...122, 45, 46, 58, 95: continue
            default: return false
            }
        }
        return true
    }
}
