import CLinux

/// Monotonic time in nanoseconds; the only clock timers use.
public enum MonotonicClock {
    @inline(__always) public static func now() -> UInt64 { pc_monotonic_ns() }
}

/// Wall-clock milliseconds since the epoch (logs, JSON `created` fields).
public enum WallClock {
    public static func nowMillis() -> UInt64 { pc_realtime_ms() }
}

/// A span of time, parsed from config strings such as `500ms`, `5s`, `2m`, `1h`.
public struct Duration64: Sendable, Hashable, CustomStringConvertible {
    public var nanoseconds: UInt64
    public init(nanoseconds: UInt64) { self.nanoseconds = nanoseconds }
    public static func milliseconds(_ n: UInt64) -> Duration64 { .init(nanoseconds: n * 1_000_000) }
    public static func seconds(_ n: UInt64) -> Duration64 { .init(nanoseconds: n * 1_000_000_000) }
    public var milliseconds: UInt64 { nanoseconds / 1_000_000 }

    /// Parses `<digits><unit>` with unit in ms, s, m, h. Returns nil on anything else.
    public static func parse(_ text: String) -> Duration64? {
        let units: [(String, UInt64)] = [("ms", 1_000_000), ("s", 1_000_000_000),
                                          ("m", 60_000_000_000), ("h", 3_600_000_000_000)]
        for (suffix, mult) in units where text.hasSuffix(suffix) {
            let digits = text.dropLast(suffix.count)
            guard !digits.isEmpty, digits.allSatisfy({ $0 >= "0" && $0 <= "9" }),
                  let v = UInt64(digits), v <= UInt64.max / mult else { return nil }
            return .init(nanoseconds: v * mult)
        }
        return nil
    }

    public var description: String {
        if nanoseconds % 1_000_000_000 == 0 { return "\(nanoseconds / 1_000_000_000)s" }
        return "\(nanoseconds / 1_000_000)ms"
    }
}
