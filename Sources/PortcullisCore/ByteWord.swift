/// Eight bytes at a time (SWAR): a `UInt64` loaded from memory with `loadUnaligned`, byte 0 in
/// its lowest bits (little-endian, as on every platform Portcullis builds for). Shared by the
/// HTTP head lexer and the JSON member scan, which look for one of two bytes in short runs where
/// a `memchr` call costs more than the search.
public enum ByteWord {
    /// The index (0–7) of the first byte of `w` that equals `a` or `b`, or nil when none does.
    /// Per byte of `x = w ^ a…`, `(x - 0x01…) & ~x & 0x80…` marks the bytes that are zero —
    /// exactly up to the first one (a borrow can mark a byte above it, never one below), so only
    /// the lowest mark is read.
    @inlinable @inline(__always)
    public static func firstIndex(of a: UInt8, or b: UInt8, in w: UInt64) -> Int? {
        let x = w ^ (0x0101_0101_0101_0101 &* UInt64(a)), y = w ^ (0x0101_0101_0101_0101 &* UInt64(b))
        let hits = ((x &- 0x0101_0101_0101_0101) & ~x | (y &- 0x0101_0101_0101_0101) & ~y) & 0x8080_8080_8080_8080
        return hits == 0 ? nil : hits.trailingZeroBitCount >> 3
    }

    /// Whether every byte of `w` is printable ASCII other than `"` and `\` (0x20–0x7F less
    /// those two): the bytes a JSON string literal holds with nothing to check. Exact as a yes or
    /// no: `(v - 0x20…) & ~v` has a byte's top bit set only if some byte is below 0x20 (borrows
    /// run upward from a byte that is), `w` itself marks the bytes ≥ 0x80, and the zero tests of
    /// `w ^ 0x22…` and `w ^ 0x5C…` the quotes and backslashes.
    @inlinable @inline(__always)
    public static func isPlainJSONStringWord(_ w: UInt64) -> Bool {
        let ones: UInt64 = 0x0101_0101_0101_0101, high: UInt64 = 0x8080_8080_8080_8080
        let q = w ^ (ones &* 0x22), s = w ^ (ones &* 0x5C)
        let marks = (w &- ones &* 0x20) & ~w | w | (q &- ones) & ~q | (s &- ones) & ~s
        return marks & high == 0
    }

    /// The index of the first byte in `[from, to)` of `base` that equals `a` or `b`, or `to`
    /// when none does: eight bytes a word, the last few one by one (for runs of a word or a few,
    /// where a `memchr` call, or two, costs more than the scan).
    @inlinable @inline(__always)
    public static func firstIndex(of a: UInt8, or b: UInt8, in base: UnsafeRawPointer, from: Int, to: Int) -> Int {
        var j = from
        while j + 8 <= to {
            if let k = firstIndex(of: a, or: b, in: (base + j).loadUnaligned(as: UInt64.self)) { return j + k }
            j += 8
        }
        while j < to {
            let c = base.load(fromByteOffset: j, as: UInt8.self)
            if c == a || c == b { return j }
            j += 1
        }
        return to
    }
}
