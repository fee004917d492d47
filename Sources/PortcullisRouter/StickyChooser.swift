#if canImport(Glibc)
import Glibc
#endif
import PortcullisConfig

/// Weighted rendezvous hashing (highest random weight): each target scores
/// `weight / -ln(u)` with `u` a hash of (caller key, target) in (0, 1); the highest score wins.
///
/// - **Sticky**: the same caller key always picks the same target (no per-request randomness),
///   on every worker and every gateway instance.
/// - **Proportional**: over many callers each target wins its weight's share.
/// - **Minimal movement**: changing one target's weight (or adding/removing a target) only moves
///   callers to or from that target; everyone else keeps their model between turns.
/// Pure functions; any thread.
public enum StickyChooser {
    /// Indices of `targets` from the preferred one down (zero-weight targets last, in order).
    public static func order(_ targets: [ModelTarget], key: String) -> [Int] {
        order(targets, keyHash: hash(key))
    }

    public static func order(_ targets: [ModelTarget], keyHash k: UInt64) -> [Int] {
        var scored: [(Double, Int)] = []
        scored.reserveCapacity(targets.count)
        for (i, t) in targets.enumerated() {
            guard t.weight > 0 else { scored.append((-1 - Double(i) / 1e6, i)); continue }
            let u = unitInterval(mix(k ^ t.idHash))
            scored.append((Double(t.weight) / -log(u), i))
        }
        // Stable for equal scores (practically never): by index.
        return scored.sorted { $0.0 != $1.0 ? $0.0 > $1.0 : $0.1 < $1.1 }.map(\.1)
    }

    /// The caller's stickiness key: tenant and user when known, else the client address.
    public static func callerKey(tenant: String?, user: String?, fallback: String) -> String {
        if tenant == nil && user == nil { return "addr\u{0}" + fallback }
        return (tenant ?? "") + "\u{0}" + (user ?? "")
    }

    /// `hash(callerKey(...))` without building the key string.
    public static func callerHash(tenant: String?, user: String?, fallback: String) -> UInt64 {
        var h: UInt64 = 0xcbf29ce484222325
        if tenant == nil && user == nil {
            feed(&h, "addr"); feed(&h, 0); feed(&h, fallback)
        } else {
            feed(&h, tenant ?? ""); feed(&h, 0); feed(&h, user ?? "")
        }
        return mix(h)
    }

    /// FNV-1a 64 over the UTF-8 bytes, then mixed: stable across processes and releases.
    public static func hash(_ s: String) -> UInt64 {
        var h: UInt64 = 0xcbf29ce484222325
        feed(&h, s)
        return mix(h)
    }

    @inline(__always) static func feed(_ h: inout UInt64, _ s: String) {
        for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x100000001b3 }
    }

    @inline(__always) static func feed(_ h: inout UInt64, _ b: UInt8) { h = (h ^ UInt64(b)) &* 0x100000001b3 }

    /// The SplitMix64 finaliser.
    @inline(__always) static func mix(_ x: UInt64) -> UInt64 {
        var z = x &+ 0x9E3779B97F4A7C15
        z = (z ^ (z >> 30)) &* 0xBF58476D1CE4E5B9
        z = (z ^ (z >> 27)) &* 0x94D049BB133111EB
        return z ^ (z >> 31)
    }

    /// 53 high bits → (0, 1), never 0 or 1.
    @inline(__always) static func unitInterval(_ x: UInt64) -> Double {
        (Double(x >> 11) + 0.5) / 9007199254740992.0
    }
}
