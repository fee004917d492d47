#if canImport(Glibc)
import Glibc
#endif

extension StringProtocol {
    /// Without leading and trailing optional whitespace (RFC 9110 OWS: spaces and tabs).
    public func trimmingOWS() -> Substring {
        var s = self[...]
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return Substring(s)
    }

    /// The lowercased, OWS-trimmed items of a comma-separated header value (`Connection: a, B`).
    public func lowercasedCommaList() -> [String] {
        lowercased().split(separator: ",").map { String($0.trimmingOWS()) }
    }
}

/// Unsigned ASCII decimal numbers, strictly: 1 to `maxDigits` digits, no sign, no space, no
/// fraction. `maxDigits` ≤ 18, so the value cannot overflow.
public enum DecimalDigits {
    @inlinable
    public static func value<C: Collection>(_ digits: C, maxDigits: Int) -> Int64? where C.Element == UInt8 {
        precondition(maxDigits <= 18, "more than 18 digits may overflow Int64")
        guard !digits.isEmpty, digits.count <= maxDigits else { return nil }
        var n: Int64 = 0
        for c in digits {
            guard c >= 48 && c <= 57 else { return nil }
            n = n * 10 + Int64(c - 48)
        }
        return n
    }
}

extension String {
    /// Calls `body` with the string's UTF-8 bytes: in place for a native string (no copy, no
    /// mutation, unlike `withUTF8` on a `var` copy), from a stack copy for a small inline one.
    @inlinable
    public func withUTF8Bytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        if let r = try utf8.withContiguousStorageIfAvailable({ try body(UnsafeRawBufferPointer($0)) }) { return r }
        var s = self
        return try s.withUTF8 { try body(UnsafeRawBufferPointer($0)) }
    }

    /// Whether `other` has the same UTF-8 bytes. Byte equality, no Unicode normalization (unlike
    /// `==`): paths and methods are matched as bytes, as nginx does; and it costs a length
    /// check and a `memcmp`, not the standard library's general comparison.
    @inlinable
    public func sameUTF8(_ other: String) -> Bool {
        // The same representation (one storage object, or the same small string: a small
        // string's two words are its bytes, count and flags) is the same bytes: no copy, no
        // memcmp. The usual case where a request meets its cached key.
        if unsafeBitCast(self, to: (UInt64, UInt64).self) == unsafeBitCast(other, to: (UInt64, UInt64).self) { return true }
        guard utf8.count == other.utf8.count else { return false }
        // Native strings: one memcmp of their storage. Small (inline) ones have no storage to
        // lend: their ≤ 15 bytes are compared as they are read.
        let stored = utf8.withContiguousStorageIfAvailable { a in
            other.utf8.withContiguousStorageIfAvailable { b in
                String.sameBytes(UnsafeRawBufferPointer(a), UnsafeRawBufferPointer(b), count: a.count)
            }
        }
        if let s = stored, let same = s { return same }
        // Small strings: copied to the stack by `withUTF8Bytes` (no allocation), then compared.
        return withUTF8Bytes { a in other.withUTF8Bytes { b in String.sameBytes(a, b, count: a.count) } }
    }

    /// Whether the string's UTF-8 bytes are exactly `bytes` (a length check and a `memcmp`).
    @inlinable
    public func sameUTF8(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard utf8.count == bytes.count else { return false }
        return withUTF8Bytes { String.sameBytes($0, bytes, count: bytes.count) }
    }

    /// Whether the string's UTF-8 bytes start with `prefix`'s (bytes, as `sameUTF8`).
    @inlinable
    public func hasUTF8Prefix(_ prefix: String) -> Bool {
        guard utf8.count >= prefix.utf8.count else { return false }
        return withUTF8Bytes { a in prefix.withUTF8Bytes { b in String.sameBytes(a, b, count: b.count) } }
    }

    @inlinable
    static func sameBytes(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer, count: Int) -> Bool {
        guard count > 0 else { return true }
        guard let pa = a.baseAddress, let pb = b.baseAddress else { return false }
        return memcmp(pa, pb, count) == 0
    }
}

extension String {
    /// Request targets most requests carry that do not fit a small string (> 15 bytes), as
    /// string literals. A literal's storage is immortal (it lives in the binary), so the dozen
    /// copies a request makes of its target and path (the parser's, the context's, routing,
    /// authentication, the adapter, the access record) retain and release nothing; a heap
    /// string that long costs two atomic operations a copy.
    public static let wellKnownTargets: [String] = ["/v1/chat/completions", "/v1/messages/count_tokens"]

    /// The well-known target whose bytes are `bytes`, if any.
    @inlinable
    public static func wellKnownTarget(_ bytes: UnsafeRawBufferPointer) -> String? {
        guard bytes.count > 15 else { return nil }
        for t in wellKnownTargets where t.sameUTF8(bytes) { return t }
        return nil
    }

    /// `self`, or the well-known target with the same bytes (a path read from the
    /// configuration then shares the literal's storage with the requests that name it).
    public var interned: String {
        withUTF8Bytes { String.wellKnownTarget($0) } ?? self
    }
}

extension Optional where Wrapped == String {
    /// `String.sameUTF8` for optional strings: both absent, or both present with the same bytes.
    public func sameUTF8(_ other: String?) -> Bool {
        switch (self, other) {
        case (nil, nil): true
        case (let a?, let b?): a.sameUTF8(b)
        default: false
        }
    }
}

/// A String compared and hashed by its UTF-8 bytes. `String`'s own `==` and hash treat
/// canonically equivalent strings (`é` and `e` + U+0301) as one: identities (tenants, users)
/// that are different bytes must stay different keys.
public struct ByteKey: Hashable, Sendable {
    public let string: String
    public init(_ s: String) { string = s }
    public static func == (a: ByteKey, b: ByteKey) -> Bool { a.string.sameUTF8(b.string) }
    public func hash(into h: inout Hasher) { string.withUTF8Bytes { h.combine(bytes: $0) } }
}

extension String {
    /// The string as one unambiguous component of a store key: bytes outside
    /// `[A-Za-z0-9._@+-]` as `%XX` (so `:`, `{`, `}` and `%` in an identity cannot forge
    /// another's key, and the result is ASCII: equal as a String exactly when equal as bytes).
    /// The common identity is returned as it is.
    public var keyEscaped: String {
        func safe(_ c: UInt8) -> Bool {
            switch c {
            case 48...57, 65...90, 97...122, 46, 95, 64, 43, 45: true
            default: false
            }
        }
        if utf8.allSatisfy(safe) { return self }
        var out: [UInt8] = []
        out.reserveCapacity(utf8.count * 3)
        let hex = Array("0123456789ABCDEF".utf8)
        for c in utf8 {
            if safe(c) { out.append(c) } else { out.append(37); out.append(hex[Int(c >> 4)]); out.append(hex[Int(c & 15)]) }
        }
        return String(decoding: out, as: UTF8.self)
    }
}

extension Array where Element == UInt8 {
    /// Appends `n` in ASCII decimal (a leading `-` when negative), without a `String`.
    public mutating func appendDecimal(_ n: Int64) {
        // Most numbers written are small (RESP lengths, indices, counts): one or two bytes
        // without the general path's scratch buffer and `append(contentsOf:)`.
        if n >= 0 && n < 10 { append(UInt8(truncatingIfNeeded: 48 &+ n)); return }
        if n >= 10 && n < 100 {
            append(UInt8(truncatingIfNeeded: 48 &+ n / 10)); append(UInt8(truncatingIfNeeded: 48 &+ n % 10)); return
        }
        DecimalDigits.withDigits(n) { append(contentsOf: $0) }
    }

    /// Appends raw bytes through the typed-buffer path of `append(contentsOf:)` (a `memcpy`
    /// after the capacity check), ~50 instructions less than the raw-buffer overload, which
    /// goes through `Sequence`'s generic copy.
    @inline(__always)
    public mutating func append(bytes: UnsafeRawBufferPointer) {
        append(contentsOf: UnsafeBufferPointer(start: bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), count: bytes.count))
    }

    /// Appends the bytes of a static string (header names, literals).
    public mutating func append(_ s: StaticString) {
        append(contentsOf: UnsafeBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
    }
}

/// Writes bytes into memory of a known bound (`Array(unsafeUninitializedCapacity:)`), without
/// `Array.append`'s per-call capacity and uniqueness checks. Writing past `capacity` is a
/// programmer error (a precondition): size the buffer for the longest output.
public struct UnsafeByteWriter {
    let base: UnsafeMutablePointer<UInt8>
    let capacity: Int
    public internal(set) var count = 0

    public init(_ buffer: UnsafeMutableBufferPointer<UInt8>) {
        precondition(buffer.baseAddress != nil || buffer.count == 0)
        base = buffer.baseAddress ?? UnsafeMutablePointer(bitPattern: 1)!
        capacity = buffer.count
    }

    public mutating func put(_ byte: UInt8) {
        precondition(count < capacity, "UnsafeByteWriter overflow")
        base[count] = byte
        count += 1
    }

    public mutating func put(_ s: StaticString) {
        let n = s.utf8CodeUnitCount
        precondition(capacity - count >= n, "UnsafeByteWriter overflow")
        (base + count).update(from: s.utf8Start, count: n)
        count += n
    }

    public mutating func put(_ bytes: UnsafeRawBufferPointer) {
        precondition(capacity - count >= bytes.count, "UnsafeByteWriter overflow")
        if let p = bytes.baseAddress { UnsafeMutableRawPointer(base + count).copyMemory(from: p, byteCount: bytes.count) }
        count += bytes.count
    }

    /// Where the next byte goes (bytes already written before it may be changed in place).
    public var end: UnsafeMutablePointer<UInt8> { base + count }

    /// The bytes written so far.
    public var written: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

    public mutating func put(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { put($0) }
    }

    /// `n` in ASCII decimal (a leading `-` when negative).
    public mutating func putDecimal(_ n: Int64) {
        if n < 0 { put(45) }
        let v = n.magnitude
        let digits = DecimalDigits.count(v)
        precondition(capacity - count >= digits, "UnsafeByteWriter overflow")
        DecimalDigits.write(v, endingAt: base + count + digits)
        count += digits
    }
}

extension DecimalDigits {
    /// 10^k for k in 0...19 (a switch the compiler makes a table).
    @inline(__always) static func power(_ k: Int) -> UInt64 {
        switch k {
        case 0: 1; case 1: 10; case 2: 100; case 3: 1_000; case 4: 10_000; case 5: 100_000
        case 6: 1_000_000; case 7: 10_000_000; case 8: 100_000_000; case 9: 1_000_000_000
        case 10: 10_000_000_000; case 11: 100_000_000_000; case 12: 1_000_000_000_000
        case 13: 10_000_000_000_000; case 14: 100_000_000_000_000; case 15: 1_000_000_000_000_000
        case 16: 10_000_000_000_000_000; case 17: 100_000_000_000_000_000
        case 18: 1_000_000_000_000_000_000; default: 10_000_000_000_000_000_000
        }
    }

    /// How many decimal digits `v` has (1 for 0), without a loop: from the bit length `b`,
    /// `t = b × 1233 / 4096` (1233/4096 ≈ log10 2) is the digit count or one less, and one
    /// comparison with 10^t decides. (`v | 1`: 0 counts as 1; for t ≥ 1 the even 10^t makes
    /// `v | 1 ≥ 10^t` the same test as `v ≥ 10^t`.)
    static func count(_ v: UInt64) -> Int {
        let t = ((64 &- (v | 1).leadingZeroBitCount) &* 1233) >> 12          // 0...19
        return t &+ ((v | 1) >= power(t) ? 1 : 0)
    }

    /// `n` in ASCII decimal (a leading `-` when negative), written in a scratch on the stack and
    /// lent to `body`: the one decimal writer behind `appendDecimal` of arrays and buffers.
    @inline(__always)
    public static func withDigits<R>(_ n: Int64, _ body: (UnsafeBufferPointer<UInt8>) -> R) -> R {
        var scratch: (UInt64, UInt64, UInt64) = (0, 0, 0)                // 24 bytes: a sign and 20 digits
        return Swift.withUnsafeMutableBytes(of: &scratch) { raw in
            let d = raw.bindMemory(to: UInt8.self)
            guard let base = d.baseAddress else { return body(UnsafeBufferPointer(start: nil, count: 0)) }
            let v = n.magnitude
            let digits = count(v)
            write(v, endingAt: base + 24)
            var start = 24 - digits
            if n < 0 { start -= 1; base[start] = 45 }
            return body(UnsafeBufferPointer(rebasing: d[start...]))
        }
    }

    /// "00" "01" … "99": two digits per load (a literal: no initialisation, no array).
    static var pairs: StaticString { """
        00010203040506070809101112131415161718192021222324252627282930313233343536373839\
        40414243444546474849505152535455565758596061626364656667686970717273747576777879\
        8081828384858687888990919293949596979899
        """ }

    /// Writes the decimal digits of `v` to the bytes just before `end`, two digits per
    /// division by 100 (the digit count was found beforehand: one pass, no scratch).
    static func write(_ v: UInt64, endingAt end: UnsafeMutablePointer<UInt8>) {
        let pairs = Self.pairs.utf8Start
        var v = v, p = end
        while v >= 100 {
            let r = Int(truncatingIfNeeded: v % 100) &* 2
            v /= 100
            p -= 2
            p[0] = pairs[r]; p[1] = pairs[r &+ 1]
        }
        if v >= 10 {
            let r = Int(truncatingIfNeeded: v) &* 2
            p -= 2
            p[0] = pairs[r]; p[1] = pairs[r &+ 1]
        } else {
            p -= 1
            p[0] = 48 &+ UInt8(truncatingIfNeeded: v)
        }
    }
}

/// Whole-file reads for start-up and reload code (config, keys). Never on the request path.
public enum FileReader {
    /// The file's bytes, or nil when it cannot be opened or exceeds `limit` bytes.
    public static func bytes(_ path: String, limit: Int = 16 << 20) -> [UInt8]? {
        guard let f = fopen(path, "rb") else { return nil }
        defer { fclose(f) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = fread(&buf, 1, buf.count, f)
            if n > 0 { out += buf[0..<n] }
            if out.count > limit { return nil }
            if n < buf.count { break }
        }
        return out
    }
}

/// Writes all of a buffer to an fd, retrying short writes and EINTR (logs only).
public func writeAll(_ fd: Int32, _ p: UnsafeRawPointer?, _ count: Int) {
    guard let p else { return }
    var off = 0
    while off < count {
        let r = write(fd, p + off, count - off)
        if r <= 0 {
            if errno == EINTR { continue }
            return
        }
        off += r
    }
}
