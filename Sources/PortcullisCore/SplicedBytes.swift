/// Bytes to send: an array as it is, or an array with one range replaced — a request body whose
/// `model` the router rewrote. The pieces (before the range, the new bytes, after it) are
/// written with one gathered `sendmsg` (`withPieces`), so a large body is not copied into a new
/// array per attempt; `joined()` makes the one array a translating adapter or a test needs.
/// Immutable, so an attempt may keep it while the next is rendered.
public struct SplicedBytes: Sendable {
    /// The bytes the splice is made in (the client's body).
    public let base: [UInt8]
    /// The range of `base` replaced by `insert` (empty with an empty `insert`: `base` as it is).
    public let range: Range<Int>
    public let insert: [UInt8]

    /// `whole`, unchanged.
    public init(_ whole: [UInt8]) {
        base = whole; range = 0..<0; insert = []
    }

    /// `base` with `range` (within it) replaced by `insert`.
    public init(_ base: [UInt8], replacing range: Range<Int>, with insert: [UInt8]) {
        precondition(range.lowerBound >= 0 && range.upperBound <= base.count, "a splice range lies within its bytes")
        self.base = base; self.range = range; self.insert = insert
    }

    public var count: Int { base.count - range.count + insert.count }
    public var isEmpty: Bool { count == 0 }

    /// The bytes as one array (`base` itself when nothing is replaced).
    public func joined() -> [UInt8] {
        if range.isEmpty && insert.isEmpty { return base }
        var out = [UInt8]()
        out.reserveCapacity(count)
        out.append(contentsOf: base[..<range.lowerBound])
        out.append(contentsOf: insert)
        out.append(contentsOf: base[range.upperBound...])
        return out
    }

    /// The bytes from `offset` (0…`count`) on, as three buffers in order (any may be empty),
    /// valid only inside `body`.
    public func withPieces<R>(from offset: Int,
                              _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer, UnsafeRawBufferPointer) -> R) -> R {
        base.withUnsafeBytes { b in
            insert.withUnsafeBytes { i in
                let lo = range.lowerBound, hi = range.upperBound
                // Where `offset` falls: in the prefix, in the insert, or in the suffix.
                let p0 = min(offset, lo)
                let i0 = min(max(offset - lo, 0), i.count)
                let s0 = hi + max(offset - lo - i.count, 0)
                return body(UnsafeRawBufferPointer(rebasing: b[p0..<lo]), UnsafeRawBufferPointer(rebasing: i[i0...]),
                            UnsafeRawBufferPointer(rebasing: b[min(s0, b.count)...]))
            }
        }
    }
}
