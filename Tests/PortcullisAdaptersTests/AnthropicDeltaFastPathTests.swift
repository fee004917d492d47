import XCTest
import PortcullisJSON
import PortcullisTestSupport
@testable import PortcullisAdapters

/// The stream translator's fast path for text and tool-argument deltas (`deltaChunk`) against
/// its strict path (`translateValues`, which parses every event into values): the same chunks,
/// by value, for any event; the same bytes where the text has nothing to re-escape.
final class AnthropicDeltaFastPathTests: XCTestCase {
    /// Pieces of a text literal's content: plain, escapes, UTF-8, and things a valid literal
    /// cannot hold (raw controls, bad escapes, lone surrogates, invalid UTF-8).
    static let valid: [[UInt8]] = [
        Array("The gate".utf8), Array(" is open.".utf8), Array("/".utf8), Array("a".utf8), Array("{\"x\":1}".utf8.filter { $0 != 0x22 }),
        Array("\\n".utf8), Array("\\\"".utf8), Array("\\\\".utf8), Array("\\/".utf8), Array("\\t".utf8), Array("\\r".utf8),
        Array("\\b".utf8), Array("\\f".utf8), Array("\\u00e9".utf8), Array("\\u0001".utf8), Array("\\ud83d\\ude00".utf8),
        Array("é".utf8), Array("ü€".utf8), Array("😀".utf8), Array("漢字".utf8), [0x7F],
    ]
    static let invalid: [[UInt8]] = [
        [0x0A], [0x01], [0x1F], Array("\\x".utf8), Array("\\u12".utf8), Array("\\ud83d".utf8), Array("\\ude00".utf8),
        [0xC0, 0x80], [0xED, 0xA0, 0x80], [0xF5, 0x80, 0x80, 0x80], [0xE2, 0x82], [0x80], [0xFF],
    ]

    func randomText(_ rng: inout SeededRandom, invalidChance: Int) -> [UInt8] {
        var t: [UInt8] = []
        for _ in 0..<Int(rng.next() % 6) {
            if rng.next() % 100 < UInt64(invalidChance) {
                t += Self.invalid[Int(rng.next() % UInt64(Self.invalid.count))]
            } else {
                t += Self.valid[Int(rng.next() % UInt64(Self.valid.count))]
            }
        }
        return t
    }

    /// A `content_block_delta` event in one of the shapes a provider could send: a text or a
    /// tool call's arguments (or another kind), members in any order, extra members, white
    /// space, indices plain and not, and now and then a repeated or escaped name.
    func randomEvent(_ rng: inout SeededRandom) -> (data: [UInt8], text: [UInt8]) {
        let text = randomText(&rng, invalidChance: 8)
        let sp = rng.next() % 4 == 0 ? " " : ""
        let kinds = ["text_delta", "text_delta", "text_delta", "input_json_delta", "input_json_delta", "signature_delta"]
        let kind = kinds[Int(rng.next() % UInt64(kinds.count))]
        let field = kind == "text_delta" ? "text" : "partial_json"
        var inner: [[UInt8]] = [Array("\"type\":\(sp)\"\(kind)\"".utf8), Array("\"\(field)\":\(sp)\"".utf8) + text + [0x22]]
        if rng.next() % 8 == 0 { inner.append(Array("\"extra\":{\"a\":[1,2,\"}\"]}".utf8)) }
        if rng.next() % 8 == 0 { inner.append(Array("\"\(field == "text" ? "partial_json" : "text")\":\"other\"".utf8)) }
        if rng.next() % 20 == 0 { inner.append(Array("\"\(field)\":\"again\"".utf8)) }
        if rng.next() % 20 == 0 { inner[0] = Array("\"typ\\u0065\":\"\(kind)\"".utf8) }
        if rng.next() % 2 == 0 { inner.reverse() }
        let deltaObject = [0x7B] + Array(inner.joined(separator: Array(",\(sp)".utf8))) + [0x7D]
        let indices = ["0", "1", "2", "0", "1", "1.0", "1e0", "1000000", "-1", "\"1\""]
        var outer: [[UInt8]] = [
            Array("\"type\":\(sp)\"\(rng.next() % 12 == 0 ? "content_block_stop" : "content_block_delta")\"".utf8),
            Array("\"index\":\(indices[Int(rng.next() % UInt64(indices.count))])".utf8),
            Array("\"delta\":\(sp)".utf8) + deltaObject,
        ]
        if rng.next() % 20 == 0 { outer.append(Array("\"delta\":{}".utf8)) }
        if rng.next() % 20 == 0 { outer.append(Array("\"index\":0".utf8)) }
        if rng.next() % 3 == 0 { outer.swapAt(0, 2) }
        let data = Array("\(sp){\(sp)".utf8) + Array(outer.joined(separator: [0x2C])) + Array("\(sp)}\(sp)".utf8)
        return (data, text)
    }

    func testDeltasGiveTheStrictPathsValues() throws {
        var rng = SeededRandom(seed: 0x5EED_7E47)
        var fast = 0, fastToolCalls = 0
        for round in 0..<3_000 {
            let (data, text) = randomEvent(&rng)
            for includeUsage in [false, true] {
                var tr = AnthropicStreamTranslator(created: 1_700_000_000, includeUsage: includeUsage)
                if round % 2 == 0 {   // after a message_start: the chunk head has the stream's id and model
                    _ = tr.translate(data: Array(#"{"type":"message_start","message":{"id":"msg_\#(round)","model":"claude-\"q\"","usage":{"input_tokens":3,"output_tokens":1}}}"#.utf8))
                }
                for block in [1, 0] where round % (block + 2) != 0 {   // tool-use blocks opened (tool-call indices 0, 1)
                    _ = tr.translate(data: Array(#"{"type":"content_block_start","index":\#(block),"content_block":{"type":"tool_use","id":"t\#(block)","name":"f","input":{}}}"#.utf8))
                }
                var strict = tr
                let got = tr.translate(data: data)
                let want = data.withUnsafeBytes { strict.translateValues($0) }
                if let c = data.withUnsafeBytes({ tr.deltaChunk($0) }) {
                    fast += 1
                    if String(decoding: c, as: UTF8.self).contains("\"tool_calls\"") { fastToolCalls += 1 }
                }
                let context = "event \(String(decoding: data, as: UTF8.self))"
                if want.isEmpty { XCTAssertEqual(got, [], context); continue }
                XCTAssertEqual(Array(got.prefix(6)), Array("data: ".utf8), context)
                XCTAssertEqual(Array(got.suffix(2)), [0x0A, 0x0A], context)
                XCTAssertEqual(try JSONReader.parse(Array(got.dropFirst(6).dropLast(2))),
                               try JSONReader.parse(Array(want.dropFirst(6).dropLast(2))), context)
                // Nothing to re-escape: the very same bytes.
                if !text.contains(0x5C) && text.allSatisfy({ $0 >= 0x20 }) && !text.contains(0x7F) || text.isEmpty {
                    XCTAssertEqual(String(decoding: got, as: UTF8.self), String(decoding: want, as: UTF8.self), context)
                }
            }
        }
        XCTAssertGreaterThan(fast, 2_000, "most events took the fast path")
        XCTAssertGreaterThan(fastToolCalls, 200, "tool calls' arguments took it too")
    }

    /// A tool call's index is written in decimal however many digits it has (0, 9, 10, 123):
    /// the fast path's chunk is the strict path's, byte for byte.
    func testToolCallIndicesOfSeveralDigits() {
        var tr = AnthropicStreamTranslator(created: 7, includeUsage: false)
        for block in 0..<124 {   // tool-call index k for block k
            _ = tr.translate(data: Array(#"{"type":"content_block_start","index":\#(block),"content_block":{"type":"tool_use","id":"t\#(block)","name":"f","input":{}}}"#.utf8))
        }
        for block in [0, 9, 10, 99, 100, 123] {
            let data = Array(#"{"type":"content_block_delta","index":\#(block),"delta":{"type":"input_json_delta","partial_json":"{\"a\":1}"}}"#.utf8)
            var strict = tr
            let fast = data.withUnsafeBytes { tr.deltaChunk($0) }
            XCTAssertNotNil(fast, "block \(block)")
            XCTAssertEqual(String(decoding: fast ?? [], as: UTF8.self),
                           String(decoding: data.withUnsafeBytes { strict.translateValues($0) }, as: UTF8.self), "block \(block)")
            XCTAssertTrue(String(decoding: fast ?? [], as: UTF8.self).contains("\"tool_calls\":[{\"index\":\(block),"), "block \(block)")
        }
    }

    /// An event whose text is not a valid string literal (a raw newline, a bad escape, a lone
    /// surrogate, invalid UTF-8) is dropped, as the strict reader drops it; so is one with junk
    /// between its members.
    func testAnInvalidTextIsNotCopied() {
        var tr = AnthropicStreamTranslator(created: 1, includeUsage: false)
        for text in Self.invalid {
            let data = Array(#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":""#.utf8) + text + Array("\"}}".utf8)
            XCTAssertNil(data.withUnsafeBytes { tr.deltaChunk($0) }, "\(text)")
            XCTAssertEqual(tr.translate(data: data), [], "\(text)")
        }
        let junk = Array(#"{"type":"content_block_delta","delta":{"#.utf8) + [0x1D, 0, 0] + Array(#""type":"text_delta","text":"a"}}"#.utf8)
        XCTAssertEqual(tr.translate(data: junk), [])
    }

    /// The one difference between the paths, by design: a repeated member name the fast path
    /// does not read (here `signature`) is the provider's to judge; the strict reader refuses
    /// the whole event. A repeated name it reads sends the event to the strict reader.
    func testARepeatedNameItDoesNotReadIsTheProviders() {
        var tr = AnthropicStreamTranslator(created: 1, includeUsage: false)
        let other = Array(#"{"type":"content_block_delta","signature":0,"signature":1,"delta":{"type":"text_delta","text":"a"}}"#.utf8)
        XCTAssertNotNil(other.withUnsafeBytes { tr.deltaChunk($0) })
        XCTAssertEqual(other.withUnsafeBytes { tr.translateValues($0) }, [])
        for read in [#"{"type":"content_block_delta","delta":{"type":"text_delta","text":"a","t\u0065xt":"b"}}"#,
                     #"{"type":"content_block_delta","index":0,"index":1,"delta":{"type":"text_delta","text":"a"}}"#,
                     #"{"type":"content_block_delta","type":"content_block_delta","delta":{"type":"text_delta","text":"a"}}"#] {
            XCTAssertNil(Array(read.utf8).withUnsafeBytes { tr.deltaChunk($0) }, read)
            XCTAssertEqual(tr.translate(data: Array(read.utf8)), [], read)
        }
    }

    /// The chunk bytes `chunk` writes from the cached head are the ones of the whole chunk
    /// object written at once (as every chunk was before the head was cached).
    func testChunksAreTheWholeObjectsBytes() {
        for includeUsage in [false, true] {
            var tr = AnthropicStreamTranslator(created: 42, includeUsage: includeUsage)
            for step in 0..<2 {
                for (delta, finish) in [(JSONValue.obj([("content", .string("a\"b\n"))]), JSONValue.null),
                                        (.obj([]), .string("stop")), (.obj([("role", .string("assistant"))]), .string("length"))] {
                    var members = tr.base()
                    members.append(("choices", .array([.obj([("index", .int(0)), ("delta", delta), ("logprobs", .null), ("finish_reason", finish)])])))
                    if includeUsage { members.append(("usage", .null)) }
                    XCTAssertEqual(String(decoding: tr.chunk(delta: delta, finish: finish), as: UTF8.self),
                                   String(decoding: tr.event(.obj(members)), as: UTF8.self))
                }
                if step == 0 {
                    _ = tr.translate(data: Array(#"{"type":"message_start","message":{"id":"msg_1","model":"claude-x"}}"#.utf8))
                    XCTAssertTrue(String(decoding: tr.chunkHead, as: UTF8.self).contains("\"chatcmpl-msg_1\""))
                }
            }
        }
    }
}
