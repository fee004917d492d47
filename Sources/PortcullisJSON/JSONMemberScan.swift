#if canImport(Glibc)
import Glibc
#endif
import PortcullisCore

/// The lenient member scan: the per-request way a gateway stage finds a few top-level members
/// of a JSON object (a client's body, a provider's answer) without validating or building
/// anything; the strict `topLevelMembers` decides whenever the scan cannot be conclusive.
extension JSONReader {
    /// A fast, non-validating pass over a top-level object a *provider* sent (its JSON is its
    /// own business; we only need a few of its members): strings are skipped a word at a time
    /// (long ones with `memchr`), nesting is counted (below the top level only strings and
    /// brackets are looked at), top-level names compared as raw bytes (escaped names never match).
    /// Nil when the text is not an object or ends early.
    /// With `guarded`, the scan also gives up (nil) on a top-level name containing an escape or
    /// on an asked-for name seen twice: the cases where a lenient reader and the provider's could
    /// read different values (`memberScan` then asks the strict reader).
    ///
    /// With `untilFound` (not with `guarded`), the scan returns as soon as every name has its
    /// value (the rest of the object is not read; `isEmpty` is then false).
    public static func lenientTopLevelMembers(_ names: JSONNames, in b: UnsafeRawBufferPointer, guarded: Bool = false,
                                              untilFound: Bool = false) -> TopLevelScan? {
        precondition(!(guarded && untilFound), "a guarded scan reads the whole object")
        guard let base = b.baseAddress else { return nil }
        // The ranges found live in a small stack buffer (begin, end per name; -1: absent) and
        // the state in plain locals no nested function captures, so the loop keeps them in
        // registers instead of reloading them around every structural byte.
        return withUnsafeTemporaryAllocation(of: Int.self, capacity: 2 * JSONNames.maxCount) { ranges -> TopLevelScan? in
            for k in 0..<(2 * JSONNames.maxCount) { ranges[k] = -1 }
            let bytes = base.assumingMemoryBound(to: UInt8.self)
            let n = b.count
            var remaining = names.count
            var i = 0
            while i < n && JSONReader.scanClass(bytes[i]) == ScanClass.space { i &+= 1 }
            guard i < n, bytes[i] == UInt8(ascii: "{") else { return nil }
            i &+= 1
            let afterBrace = i
            var depth = 1
            var expectKey = true          // at depth 1: the next string is a member name
            var member = -1               // index in `names` of the member whose value is being read
            var valueStart = -1           // where that value begins (set at its `:`)
            var end = -1                  // ≥ 0: that value ends here; record it
            scan: while i < n {
                // Inside a nested value (most of a large body: messages, tools) only strings and
                // brackets matter (`skipNested`). The bracket that closes a top-level value (back
                // to depth 1) is left to the switch below.
                if depth > 1 {
                    i = JSONReader.skipNested(bytes, n, i, &depth)
                    if i < 0 { return nil }
                }
                // One table load classifies a byte; most bytes (digits, letters, `true`…, stray
                // bytes) are `plain` and skipped here.
                var k = JSONReader.scanClass(bytes[i])
                while k == ScanClass.plain {
                    i &+= 1
                    if i >= n { break scan }
                    k = JSONReader.scanClass(bytes[i])
                }
                switch k {
                case ScanClass.quote:
                    let e = JSONReader.stringEnd(bytes, n, i)
                    if e < 0 { return nil }
                    if depth == 1 {
                        if expectKey {
                            if guarded && e - i > 2 && memchr(base + i + 1, 0x5C, e - i - 2) != nil { return nil }
                            member = names.index(of: base + i + 1, count: e - 1 - i - 1) ?? -1
                            if guarded && member >= 0 && ranges[2 &* member] >= 0 { return nil }
                            expectKey = false
                        } else if member >= 0 && valueStart >= 0 {
                            end = e                                          // a string value
                        }
                    }
                    i = e
                case ScanClass.colon:
                    i &+= 1
                    if depth == 1 {
                        // The value begins at the next byte that is not white space.
                        while i < n && JSONReader.scanClass(bytes[i]) == ScanClass.space { i &+= 1 }
                        valueStart = i
                    }
                case ScanClass.comma:
                    if depth == 1 {
                        if member >= 0 && valueStart >= 0 {
                            end = trimEnd(b, valueStart, i)                  // a number or literal
                        } else {
                            member = -1; valueStart = -1
                        }
                        expectKey = true
                    }
                    i &+= 1
                case ScanClass.open:
                    depth &+= 1
                    i &+= 1
                case ScanClass.close:
                    depth &-= 1
                    i &+= 1
                    if depth == 1 {
                        if member >= 0 && valueStart >= 0 { end = i }       // an object or array value
                    } else if depth == 0 {
                        if member >= 0 && valueStart >= 0 {
                            JSONReader.record(ranges, member, valueStart, trimEnd(b, valueStart, i - 1), &remaining)
                        }
                        let isEmpty = !expectKey ? false : trimEnd(b, afterBrace, i - 1) == afterBrace
                        return JSONReader.scanResult(names.count, ranges, afterBrace: afterBrace, isEmpty: isEmpty)
                    }
                default:                                                     // white space
                    i &+= 1
                }
                if end >= 0 {
                    JSONReader.record(ranges, member, valueStart, end, &remaining)
                    member = -1; valueStart = -1; end = -1
                    if untilFound && remaining == 0 {
                        return JSONReader.scanResult(names.count, ranges, afterBrace: afterBrace, isEmpty: false)
                    }
                }
            }
            return nil
        }
    }

    /// Records `[start, end)` as the value of name `member` in the scan's stack ranges; a name
    /// seen before counts once in `remaining`.
    @inline(__always)
    static func record(_ ranges: UnsafeMutableBufferPointer<Int>, _ member: Int, _ start: Int, _ end: Int, _ remaining: inout Int) {
        if ranges[2 &* member] < 0 { remaining &-= 1 }
        ranges[2 &* member] = start; ranges[2 &* member &+ 1] = end
    }

    /// The scan's answer from its stack ranges.
    static func scanResult(_ count: Int, _ ranges: UnsafeMutableBufferPointer<Int>, afterBrace: Int, isEmpty: Bool) -> TopLevelScan {
        var found = TopLevelScan(count: count)
        found.afterBrace = afterBrace
        found.isEmpty = isEmpty
        for m in 0..<count where ranges[2 &* m] >= 0 { found.set(m, ranges[2 &* m], ranges[2 &* m &+ 1]) }
        return found
    }

    /// What the lenient scan does with a byte (`scanClasses`).
    enum ScanClass {
        static let plain: UInt8 = 0, space: UInt8 = 1, quote: UInt8 = 2, colon: UInt8 = 3, comma: UInt8 = 4
        static let open: UInt8 = 5, close: UInt8 = 6
    }

    /// Each byte's `ScanClass` as an ASCII digit: JSON's white space (1), `"` (2), `:` (3),
    /// `,` (4), `{ [` (5), `} ]` (6); every other byte — letters and the characters of numbers,
    /// and stray bytes the provider is left to judge — is plain (0). A literal: no lazy global
    /// to check on each load.
    @inline(__always) static var scanClasses: StaticString {
        "0000000001100100000000000000000010200000000040000000000000300000000000000000000000000000000506000000000000000000000000000005060000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    }

    @inline(__always) static func scanClass(_ c: UInt8) -> UInt8 { scanClasses.utf8Start[Int(c)] &- 0x30 }

    /// The end of the string opening at `i` (index after its closing quote), or -1.
    @inline(__always)
    static func stringEnd(_ bytes: UnsafePointer<UInt8>, _ n: Int, _ i: Int) -> Int {
        var j = i + 1
        // Most strings of a request (names, roles, types, enum values, short texts) end within a
        // few words, where a `memchr` call costs more than the string: their first 32 bytes are
        // read eight at a time (`ByteWord`), for a quote or a backslash (whose escaped byte is
        // skipped). Longer strings go on with `memchr`, which counts the backslashes before each
        // quote it finds (the same answer wherever this loop stopped).
        while j &+ 8 <= n && j &- i <= 32 {
            guard let hit = ByteWord.firstIndex(of: 0x22, or: 0x5C, in: UnsafeRawPointer(bytes + j).loadUnaligned(as: UInt64.self)) else {
                j &+= 8
                continue
            }
            let k = j &+ hit
            if bytes[k] == 0x22 { return k &+ 1 }
            j = k &+ 2                                           // past the backslash and its byte
        }
        while j < n {
            guard let q = memchr(bytes + j, 0x22, n - j) else { return -1 }
            let k = UnsafeRawPointer(q) - UnsafeRawPointer(bytes)
            var slashes = 0
            while k - 1 - slashes > i && bytes[k - 1 - slashes] == 0x5C { slashes += 1 }
            if slashes % 2 == 0 { return k + 1 }
            j = k + 1
        }
        return -1
    }

    /// Bytes the lenient scan passes over without looking: letters and the characters of
    /// numbers (everything else — white space, quotes, `{ } [ ] , :` and stray bytes — goes
    /// through the full switch).
    @inline(__always) static func isPlain(_ c: UInt8) -> Bool {
        if c >= 0x3B { return c != 0x5B && c != 0x5D && c != 0x7B && c != 0x7D }
        return c >= 0x2D && c <= 0x39                     // - . / 0-9
    }

    @inline(__always) static func trimEnd(_ b: UnsafeRawBufferPointer, _ s: Int, _ e: Int) -> Int {
        var e = e
        while e > s && (b[e - 1] == 0x20 || b[e - 1] == 0x0A || b[e - 1] == 0x0D || b[e - 1] == 0x09) { e -= 1 }
        return e
    }

    /// The members a gateway stage reads from a client's body: the fast guarded scan when it is
    /// conclusive, else the strict reader (which refuses duplicates and malformed JSON with a
    /// precise reason). Values the caller reads must still be checked by the caller (digits,
    /// `stringValue`); the rest of the body is the provider's to judge.
    public static func memberScan(_ names: JSONNames, in b: UnsafeRawBufferPointer) throws(Failure) -> TopLevelScan {
        if let s = lenientTopLevelMembers(names, in: b, guarded: true) { return s }
        return try members(names, in: b, nestedIn: -1, names).outer
    }
}

/// Up to six member names a stage reads, prepared once (a `static let`) as bytes, so a scan
/// compares raw name bytes with one length test and one `memcmp`, never a `String`.
/// `@unchecked Sendable`: the byte table is written once in `init` and only read after; it is
/// never freed (the names live in `static let`s for the life of the process).
public struct JSONNames: @unchecked Sendable, ExpressibleByArrayLiteral {
    public let strings: [String]
    /// Name `k` at `table + k * 32`; lengths in `lengths` (no array to retain in the scan loop).
    let table: UnsafeMutablePointer<UInt8>
    let lengths: (Int, Int, Int, Int, Int, Int)
    public let count: Int
    public static let maxCount = 6

    public init(_ names: [String]) {
        precondition(names.count <= JSONNames.maxCount, "a top-level scan reads at most 6 names")
        precondition(names.allSatisfy { $0.utf8.count <= 32 }, "a scanned member name is at most 32 bytes")
        strings = names
        count = names.count
        table = .allocate(capacity: JSONNames.maxCount * 32)
        table.initialize(repeating: 0, count: JSONNames.maxCount * 32)
        var l = [Int](repeating: -1, count: JSONNames.maxCount)
        for (k, n) in names.enumerated() {
            for (i, c) in n.utf8.enumerated() { table[k * 32 + i] = c }
            l[k] = n.utf8.count
        }
        lengths = (l[0], l[1], l[2], l[3], l[4], l[5])
    }

    public init(arrayLiteral names: String...) { self.init(names) }

    /// The index of the name spelled by the `count` bytes at `p`, if any.
    @inline(__always)
    func index(of p: UnsafeRawPointer, count n: Int) -> Int? {
        if lengths.0 == n && memcmp(p, table, n) == 0 { return 0 }
        if lengths.1 == n && memcmp(p, table + 32, n) == 0 { return 1 }
        if lengths.2 == n && memcmp(p, table + 64, n) == 0 { return 2 }
        if lengths.3 == n && memcmp(p, table + 96, n) == 0 { return 3 }
        if lengths.4 == n && memcmp(p, table + 128, n) == 0 { return 4 }
        if lengths.5 == n && memcmp(p, table + 160, n) == 0 { return 5 }
        return nil
    }
}
