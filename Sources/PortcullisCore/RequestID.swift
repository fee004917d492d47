/// A request's id: the client's `X-Request-Id` when it was sane, else 128 random bits shown as
/// 32 lowercase hex digits. A minted id stays two integers: its digits are written straight into
/// the buffers that carry it (the upstream head, the response head), and a `String` is made only
/// when one is asked for (`description`: the access log, a log line, a stream's slot name) —
/// a 32-byte String would be one heap allocation per request.
public struct RequestID: Sendable, CustomStringConvertible {
    enum Storage: Sendable { case given(String), minted(UInt64, UInt64) }
    let storage: Storage

    /// The client's id, as sent (checked by the caller).
    public init(_ given: String) { storage = .given(given) }
    /// A minted id: `high`'s 16 hex digits, then `low`'s.
    public init(high: UInt64, low: UInt64) { storage = .minted(high, low) }

    /// Bytes of the id (32 for a minted one).
    public var utf8Count: Int {
        switch storage {
        case .given(let s): s.utf8.count
        case .minted: 32
        }
    }

    /// Writes the id's `utf8Count` bytes at `p`.
    public func write(to p: UnsafeMutablePointer<UInt8>) {
        switch storage {
        case .given(let s):
            s.withUTF8Bytes { b in if let src = b.baseAddress { UnsafeMutableRawPointer(p).copyMemory(from: src, byteCount: b.count) } }
        case .minted(let a, let b):
            RequestID.writeHex(a, to: p)
            RequestID.writeHex(b, to: p + 16)
        }
    }

    /// The id's bytes, for the length of `body`.
    public func withUTF8Bytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        switch storage {
        case .given(let s):
            return try s.withUTF8Bytes(body)
        case .minted:
            return try withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 32) { buf in
                guard let p = buf.baseAddress else { return try body(UnsafeRawBufferPointer(start: nil, count: 0)) }
                write(to: p)
                return try body(UnsafeRawBufferPointer(start: p, count: 32))
            }
        }
    }

    public var description: String {
        switch storage {
        case .given(let s): return s
        case .minted: return withUTF8Bytes { String(decoding: $0, as: UTF8.self) }
        }
    }

    /// `v` as 16 hex digits, most significant first.
    @inline(__always) static func writeHex(_ v: UInt64, to p: UnsafeMutablePointer<UInt8>) {
        let raw = UnsafeMutableRawPointer(p)
        raw.storeBytes(of: hexDigits(UInt32(truncatingIfNeeded: v >> 32)), as: UInt64.self)
        (raw + 8).storeBytes(of: hexDigits(UInt32(truncatingIfNeeded: v)), as: UInt64.self)
    }

    /// `v`'s 8 hex digits as a word whose bytes, stored little-endian, read most significant
    /// digit first: each nibble spread into a byte of its own, the order reversed, and `0`…`9`
    /// or `a`…`f` added to all eight bytes at once (a byte of 10 or more gets bit 4 from
    /// `+ 6`, which selects the letters' extra 39).
    @inline(__always) static func hexDigits(_ v: UInt32) -> UInt64 {
        var x = UInt64(v)
        x = (x | (x << 16)) & 0x0000_FFFF_0000_FFFF
        x = (x | (x << 8)) & 0x00FF_00FF_00FF_00FF
        x = (x | (x << 4)) & 0x0F0F_0F0F_0F0F_0F0F          // byte k: nibble k (least significant first)
        x = x.byteSwapped                                   // byte 0: the most significant nibble
        let letters = ((x &+ 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101
        return (x &+ 0x3030_3030_3030_3030 &+ letters &* 39).littleEndian
    }
}

extension ByteBuffer {
    /// A request id's bytes (a minted one's digits written in place).
    public func append(_ id: RequestID) {
        let n = id.utf8Count
        reserve(n)
        id.write(to: writePointer)
        commitWrite(n)
    }
}

extension UnsafeByteWriter {
    /// A request id's bytes (a minted one's digits written in place).
    public mutating func put(_ id: RequestID) {
        let n = id.utf8Count
        precondition(capacity - count >= n, "UnsafeByteWriter overflow")
        id.write(to: end)
        count += n
    }
}
