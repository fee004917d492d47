#if canImport(Glibc)
import Glibc
#endif
import XCTest
import PortcullisTestSupport
@testable import PortcullisJSON

/// The lenient member scan as it was before its byte-class table (`c07566d`): the oracle the
/// differential test holds the current scan to. It goes when the lenient scan's answers on
/// malformed text are changed on purpose (the strict-reader tests cover well-formed text).
enum ReferenceLenientScan {
    typealias TopLevelScan = JSONReader.TopLevelScan

    static func referenceIsPlain(_ c: UInt8) -> Bool {
        if c >= 0x3B { return c != 0x5B && c != 0x5D && c != 0x7B && c != 0x7D }
        return c >= 0x2D && c <= 0x39
    }

    static func referenceScan(_ names: JSONNames, in b: UnsafeRawBufferPointer, guarded: Bool = false,
                              untilFound: Bool = false) -> TopLevelScan? {
        precondition(!(guarded && untilFound), "a guarded scan reads the whole object")
        guard let base = b.baseAddress else { return nil }
        // The ranges found live in a small stack buffer (begin, end per name; -1: absent) and
        // the state in plain Ints: the loop then keeps them in registers or one stack slot
        // instead of copying a result struct's fields around on every structural byte.
        return withUnsafeTemporaryAllocation(of: Int.self, capacity: 2 * JSONNames.maxCount) { ranges -> TopLevelScan? in
            for k in 0..<(2 * JSONNames.maxCount) { ranges[k] = -1 }
            let bytes = base.assumingMemoryBound(to: UInt8.self)
            let n = b.count
            var remaining = names.count
            var i = 0
            while i < n && (bytes[i] == 0x20 || bytes[i] == 0x0A || bytes[i] == 0x0D || bytes[i] == 0x09) { i &+= 1 }
            guard i < n, bytes[i] == UInt8(ascii: "{") else { return nil }
            i &+= 1
            let afterBrace = i
            var depth = 1
            var expectKey = true          // at depth 1: the next string is a member name
            var member = -1               // index in `names` of the member whose value is being read
            var valueStart = -1
            func finish(isEmpty: Bool) -> TopLevelScan {
                var found = TopLevelScan(count: names.count)
                found.afterBrace = afterBrace
                found.isEmpty = isEmpty
                for m in 0..<names.count where ranges[2 &* m] >= 0 { found.set(m, ranges[2 &* m], ranges[2 &* m &+ 1]) }
                return found
            }
            @inline(__always) func record(_ end: Int) {
                if ranges[2 &* member] < 0 { remaining &-= 1 }   // (a repeated name counts once)
                ranges[2 &* member] = valueStart; ranges[2 &* member &+ 1] = end
            }
            while i < n {
                // Most bytes (digits, letters, `true`…) are neither structure nor white space:
                // skip them with one table load each.
                if valueStart != -2 {
                    while i < n && referenceIsPlain(bytes[i]) { i &+= 1 }
                    if i >= n { break }
                }
                let c = bytes[i]
                if c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 { i &+= 1; continue }
                if valueStart == -2 { valueStart = i }       // the first byte of a depth-1 value
                switch c {
                case 0x22:
                    let e = JSONReader.stringEnd(bytes, n, i)
                    if e < 0 { return nil }
                    if depth == 1 && expectKey {
                        if guarded && e - i > 2 && memchr(base + i + 1, 0x5C, e - i - 2) != nil { return nil }
                        member = names.index(of: base + i + 1, count: e - 1 - i - 1) ?? -1
                        if guarded && member >= 0 && ranges[2 &* member] >= 0 { return nil }
                        expectKey = false
                    } else if depth == 1 && member >= 0 && valueStart >= 0 {
                        record(e); member = -1; valueStart = -1
                        if untilFound && remaining == 0 { return finish(isEmpty: false) }
                    }
                    i = e
                    continue
                case 0x3A:                                                   // :
                    if depth == 1 { valueStart = -2 }
                case 0x2C:                                                   // ,
                    if depth == 1 {
                        if member >= 0 && valueStart >= 0 {
                            record(JSONReader.trimEnd(b, valueStart, i))
                            if untilFound && remaining == 0 { return finish(isEmpty: false) }
                        }
                        member = -1; valueStart = -1; expectKey = true
                    }
                case 0x7B, 0x5B:                                             // { [
                    depth &+= 1
                case 0x7D, 0x5D:                                             // } ]
                    depth &-= 1
                    if depth == 1 && member >= 0 && valueStart >= 0 {
                        record(i + 1); member = -1; valueStart = -1
                        if untilFound && remaining == 0 { return finish(isEmpty: false) }
                    } else if depth == 0 {
                        if member >= 0 && valueStart >= 0 { record(JSONReader.trimEnd(b, valueStart, i)) }
                        return finish(isEmpty: !expectKey ? false : JSONReader.trimEnd(b, afterBrace, i) == afterBrace)
                    }
                default:
                    break
                }
                i &+= 1
            }
            return nil
        }
    }

}

/// The current lenient scan against the reference, on random texts made of the bytes that steer
/// it (structure, quotes, escapes, white space, the asked-for names, stray bytes) in all three
/// modes: the same answer, or no answer from both.
final class LenientScanDifferentialTests: XCTestCase {
    func testCurrentScanMatchesTheReferenceOnRandomTexts() {
        let pieces = ["{", "}", "[", "]", ":", ",", "\"", "\\", "\\\"", " ", "\n", "\t", "1", "-2.5e3", "true", "null",
                      "\"model\"", "\"n\"", "\"usage\"", "\"x\"", "\"a b\"", "\"m\\u0041\"", "é", "\u{1}", "!", "#"]
        let names: JSONNames = ["model", "n", "usage"]
        var rng = SeededRandom(seed: 42)
        func same(_ a: JSONReader.TopLevelScan?, _ b: JSONReader.TopLevelScan?, _ text: String, _ mode: String) {
            XCTAssertEqual(a?.members, b?.members, "\(mode): \(text.debugDescription)")
            XCTAssertEqual(a?.isEmpty, b?.isEmpty, "\(mode): \(text.debugDescription)")
            XCTAssertEqual(a?.afterBrace, b?.afterBrace, "\(mode): \(text.debugDescription)")
        }
        for round in 0..<60_000 {
            // Mostly well-formed-looking objects with random pieces spliced in, sometimes pure noise;
            // one in twenty long enough to span several of the nested skip's 64-byte blocks.
            var text = round % 4 == 0 ? "" : "{"
            let count = Int.random(in: 0...(round % 20 == 1 ? 160 : 14), using: &rng)
            for _ in 0..<count { text += pieces[Int.random(in: 0..<pieces.count, using: &rng)] }
            if round % 3 != 0 { text += "}" }
            let bytes = Array(text.utf8)
            bytes.withUnsafeBytes { b in
                same(JSONReader.lenientTopLevelMembers(names, in: b), ReferenceLenientScan.referenceScan(names, in: b), text, "plain")
                same(JSONReader.lenientTopLevelMembers(names, in: b, guarded: true),
                     ReferenceLenientScan.referenceScan(names, in: b, guarded: true), text, "guarded")
                same(JSONReader.lenientTopLevelMembers(names, in: b, untilFound: true),
                     ReferenceLenientScan.referenceScan(names, in: b, untilFound: true), text, "untilFound")
            }
        }
    }
}
