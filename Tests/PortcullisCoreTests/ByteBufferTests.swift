import XCTest
@testable import PortcullisCore

/// `ByteBuffer`'s storage life: `release()` frees the block of an empty buffer (an idle
/// stream's), and the next write allocates again.
final class ByteBufferTests: XCTestCase {
    func testReleasedBufferAllocatesOnFirstWrite() {
        let b = ByteBuffer(capacity: 64)
        b.release()
        XCTAssertEqual(b.capacity, 0)
        XCTAssertTrue(b.isEmpty)
        b.append("data: x\n\n")
        XCTAssertEqual(b.capacity, 64)
        XCTAssertEqual(String(decoding: b.readable, as: UTF8.self), "data: x\n\n")
    }

    /// A buffer made without its block starts as a released one does.
    func testBufferMadeWithoutItsBlockAllocatesOnFirstWrite() {
        let b = ByteBuffer(capacity: 64, allocateNow: false)
        XCTAssertEqual(b.capacity, 0)
        XCTAssertTrue(b.isEmpty)
        b.release()                                   // (nothing to free)
        b.append("data: x\n\n")
        XCTAssertEqual(b.capacity, 64)
        XCTAssertEqual(String(decoding: b.readable, as: UTF8.self), "data: x\n\n")
    }

    func testReleaseFreesOnlyAnEmptyBuffer() {
        let b = ByteBuffer(capacity: 32)
        b.append([1, 2, 3])
        b.release()
        XCTAssertEqual(b.capacity, 32, "a buffer holding bytes keeps them")
        XCTAssertEqual(b.bytes, [1, 2, 3])
        b.consume(3)
        b.release()
        XCTAssertEqual(b.capacity, 0)
        b.release()  // twice is harmless
        XCTAssertEqual(b.capacity, 0)
    }

    func testReleasedBufferGrowsAgainForReadsAndLargeWrites() {
        let b = ByteBuffer(capacity: 16)
        b.release()
        b.reserve(100)  // a socket read asks for room first
        XCTAssertGreaterThanOrEqual(b.writableBytes, 100)
        let big = [UInt8](repeating: 7, count: 1000)
        b.append(big)
        XCTAssertEqual(b.bytes, big)
        b.consume(1000)
        b.release()
        b.appendDecimal(12345)
        b.append(byte: 0x20)
        b.appendHex(255)
        XCTAssertEqual(String(decoding: b.readable, as: UTF8.self), "12345 ff")
    }
}

/// `[UInt8].appendDecimal`: every width, both signs, the extremes.
final class DecimalTests: XCTestCase {
    func testAppendDecimalMatchesStringFormatting() {
        var values: [Int64] = [0, 1, 9, 10, 11, 99, 100, 101, 999, 1000, 60_000, 86_400_000, Int64.max, Int64.min, -1, -9, -10, -99, -100, -12345]
        var p: Int64 = 1
        for _ in 0..<18 { values += [p - 1, p, p + 1]; p *= 10 }
        for v in values {
            var out: [UInt8] = []
            out.appendDecimal(v)
            XCTAssertEqual(String(decoding: out, as: UTF8.self), String(v))
        }
    }

    /// The three decimal writers (arrays, buffers, the unsafe writer) against `String`, at
    /// every power of ten and its neighbours (where the digit count changes) and at random.
    func testEveryWriterMatchesStringFormattingAtEveryDigitCount() {
        var values: [Int64] = [0, 1, -1, Int64.max, Int64.min, Int64.max - 1, Int64.min + 1]
        var p: Int64 = 1
        for _ in 0..<19 { values += [p - 1, p, p + 1, -(p - 1), -p, -(p + 1), p / 2 + 1]; if p <= Int64.max / 10 { p *= 10 } }
        for shift in 0..<63 { values += [Int64(1) << shift, (Int64(1) << shift) - 1] }
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<2_000 { values.append(Int64.random(in: Int64.min...Int64.max, using: &rng) >> Int64.random(in: 0...62, using: &rng)) }
        for v in values {
            let expected = String(v)
            var array: [UInt8] = []
            array.appendDecimal(v)
            XCTAssertEqual(String(decoding: array, as: UTF8.self), expected)
            let buffer = ByteBuffer()
            buffer.appendDecimal(Int(v))
            XCTAssertEqual(String(decoding: buffer.bytes, as: UTF8.self), expected)
            let written = [UInt8](unsafeUninitializedCapacity: 24) { b, n in
                var w = UnsafeByteWriter(b)
                w.putDecimal(v)
                n = w.count
            }
            XCTAssertEqual(String(decoding: written, as: UTF8.self), expected)
        }
    }
}

/// `String.withUTF8Bytes`: the same bytes for inline (small), native and bridged-from-substring strings.
final class UTF8BytesTests: XCTestCase {
    func testEveryKindOfStringLendsItsBytes() {
        let long = String(repeating: "gate-", count: 20)
        for s in ["", "x-tenant-id", "ünïcødé", long, String(long.dropFirst(3)), "a" + long] {
            XCTAssertEqual(s.withUTF8Bytes { Array($0) }, Array(s.utf8), s)
        }
    }
}

/// `String.sameUTF8` / `hasUTF8Prefix`: byte equality (no Unicode normalization), every kind of string.
final class UTF8CompareTests: XCTestCase {
    func testSameBytesOnly() {
        let long = String(repeating: "/v1/chat/completions", count: 3)
        let cases: [(String, String, Bool)] = [
            ("", "", true), ("/v1/chat/completions", "/v1/chat/completions", true), (long, String(long), true),
            ("/v1/chat/completions", "/v1/chat/completionz", false), ("/v1/models", "/v1/model", false),
            ("", "/", false), ("POST", "PUT", false), ("GET", "GET", true),
            ("/caf\u{E9}", "/cafe\u{301}", false),   // == says equal (canonically equivalent); the bytes differ
        ]
        for (a, b, same) in cases {
            XCTAssertEqual(a.sameUTF8(b), same, "\(a) vs \(b)")
            XCTAssertEqual(b.sameUTF8(a), same, "\(b) vs \(a)")
        }
    }

    /// The same object, the same small string, separate storages with equal bytes, and one
    /// string compared with itself: all equal; one byte apart in each form: not.
    func testSameRepresentationAndSeparateStorages() {
        let long = String(repeating: "tenant-", count: 5)
        let separate = String(decoding: Array(long.utf8), as: UTF8.self)
        let alias = long
        XCTAssertTrue(long.sameUTF8(alias))
        XCTAssertTrue(long.sameUTF8(separate))
        XCTAssertTrue("acme".sameUTF8(String(decoding: Array("acme".utf8), as: UTF8.self)))
        XCTAssertFalse("acme".sameUTF8("acmf"))
        XCTAssertFalse(long.sameUTF8(String(long.dropLast()) + "x"))
        XCTAssertFalse("caf\u{E9}".sameUTF8("cafe\u{301}"))
        XCTAssertFalse("".sameUTF8("a"))
    }

    /// A well-known target read from bytes, or a heap copy of it interned, is the literal itself
    /// (the same representation: its storage immortal); other strings are left as they are.
    func testWellKnownTargetsShareTheLiteral() {
        let literal = String.wellKnownTargets[0]
        func bits(_ s: String) -> (UInt64, UInt64) { unsafeBitCast(s, to: (UInt64, UInt64).self) }
        let fromBytes = Array("/v1/chat/completions".utf8).withUnsafeBytes { String.wellKnownTarget($0) }
        XCTAssertNotNil(fromBytes)
        XCTAssertTrue(fromBytes.map { bits($0) == bits(literal) } ?? false)
        let copy = String(decoding: Array("/v1/chat/completions".utf8), as: UTF8.self)
        XCTAssertFalse(bits(copy) == bits(literal))
        XCTAssertTrue(bits(copy.interned) == bits(literal))
        let other = String(decoding: Array("/v1/chat/completionz".utf8), as: UTF8.self)
        XCTAssertTrue(bits(other.interned) == bits(other))
        XCTAssertNil(Array("/v1/models".utf8).withUnsafeBytes { String.wellKnownTarget($0) })
    }

    func testBytePrefix() {
        XCTAssertTrue("/v1/chat/completions".hasUTF8Prefix("/v1/"))
        XCTAssertTrue("/v1/".hasUTF8Prefix("/v1/"))
        XCTAssertTrue("/v1".hasUTF8Prefix(""))
        XCTAssertFalse("/v1".hasUTF8Prefix("/v1/"))
        XCTAssertFalse("/v2/chat".hasUTF8Prefix("/v1/"))
        XCTAssertFalse("/cafe\u{301}/x".hasUTF8Prefix("/caf\u{E9}"))
    }
}
