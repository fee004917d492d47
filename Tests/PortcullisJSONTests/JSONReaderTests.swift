import XCTest
import PortcullisTestSupport
@testable import PortcullisJSON

/// The strict JSON reader: RFC 8259 accept/reject cases, duplicate names, member spans.
final class JSONReaderTests: XCTestCase {
    func parse(_ s: String) throws -> JSONValue { try JSONReader.parse(Array(s.utf8)) }

    func testAcceptsValidDocuments() throws {
        XCTAssertEqual(try parse(" {\"a\": [1, -2.5e3, true, false, null, \"x\"]} "),
                       .object(JSONObject([("a", .array([.numberText("1"), .numberText("-2.5e3"), .bool(true), .bool(false), .null, .string("x")]))])))
        XCTAssertEqual(try parse("\"\\u00e9\\ud83d\\ude00\\n\\/\""), .string("é😀\n/"))
        XCTAssertEqual(try parse("0"), .numberText("0"))
        XCTAssertEqual(try parse("{}"), .object(JSONObject([])))
        XCTAssertEqual(try parse("\"héllo\""), .string("héllo"))
        XCTAssertEqual(try parse("{\"exp\": 1300819380}").objectValue?["exp"]?.number, 1300819380)
    }

    func testRejectsInvalidDocuments() {
        for bad in ["", "{", "{\"a\":1,}", "[1,]", "01", "1.", ".5", "-", "+1", "1e", "tru", "nul", "'a'",
                    "\"a", "\"\\x\"", "\"\\ud800\"", "\"\\udc00\"", "\"\\ud800\\u0041\"", "{\"a\" 1}", "{a:1}",
                    "[1 2]", "1 2", "\"tab\there\"", "{\"a\":1}x", "NaN", "[" + String(repeating: "[", count: 70) + "]"] {
            XCTAssertThrowsError(try parse(bad), "accepted \(bad.debugDescription)")
        }
        XCTAssertThrowsError(try JSONReader.parse([0x22, 0xFF, 0x22]), "invalid UTF-8 accepted")
        XCTAssertThrowsError(try JSONReader.parse([0x22, 0xC3, 0x22]), "truncated UTF-8 accepted")
    }

    func testDuplicateMemberNamesAreRefusedAtEveryDepth() {
        XCTAssertThrowsError(try parse("{\"alg\":\"HS256\",\"alg\":\"none\"}")) { e in
            XCTAssertTrue((e as? JSONReader.Failure)?.reason.contains("duplicate member name 'alg'") == true)
        }
        XCTAssertThrowsError(try parse("{\"a\":{\"b\":1,\"b\":2}}"))
        // Same name after unescaping is the same name.
        XCTAssertThrowsError(try parse("{\"tenant_id\":\"a\",\"tenant\\u005fid\":\"b\"}"))
        XCTAssertNoThrow(try parse("[{\"a\":1},{\"a\":2}]"))
    }

    func testTopLevelMemberSpan() throws {
        let body = Array("{\"model\" : \"chat-default\", \"n\": 1.50, \"messages\":[{\"model\":\"inner\"}]}".utf8)
        let r = try body.withUnsafeBytes { try JSONReader.topLevelMember("model", in: $0) }
        XCTAssertEqual(r.map { String(decoding: body[$0], as: UTF8.self) }, "\"chat-default\"")
        let n = try body.withUnsafeBytes { try JSONReader.topLevelMember("n", in: $0) }
        XCTAssertEqual(n.map { String(decoding: body[$0], as: UTF8.self) }, "1.50")
        XCTAssertNil(try body.withUnsafeBytes { try JSONReader.topLevelMember("absent", in: $0) })
        let dup = Array("{\"model\":\"a\",\"model\":\"b\"}".utf8)
        XCTAssertThrowsError(try dup.withUnsafeBytes { try JSONReader.topLevelMember("model", in: $0) })
        let notObject = Array("[1]".utf8)
        XCTAssertThrowsError(try notObject.withUnsafeBytes { try JSONReader.topLevelMember("model", in: $0) })
    }

    /// Mutated documents never crash the reader, and whatever it accepts has no duplicate names.
    func testMutatedInputNeverCrashes() {
        var rng = SeededRandom(seed: 0x4A534F4E)
        let seeds = ["{\"alg\":\"ES256\",\"kid\":\"k1\",\"typ\":\"JWT\"}", "{\"a\":[1,2,{\"b\":\"\\u00e9\"}],\"c\":-0.5e+7}",
                     "[true,false,null,\"x\\n\"]"]
        let alphabet = Array("{}[]\",:\\u0123456789eE+-.truefalsn \t\n".utf8) + [0x00, 0x80, 0xC3, 0xFF]
        for i in 0..<20_000 {
            let input = mutated(Array(seeds[i % seeds.count].utf8), alphabet: alphabet, maxEdits: 4, using: &rng)
            if case .object(let o)? = try? JSONReader.parse(input) {
                XCTAssertEqual(Set(o.keys).count, o.keys.count)
            }
        }
    }

    func testTopLevelScanValidatesNestedValuesWithoutBuildingThem() throws {
        func scan(_ s: [UInt8]) throws -> JSONReader.TopLevelScan { try s.withUnsafeBytes { try JSONReader.topLevelMembers(["model"], in: $0) } }
        let ok = Array("{\"messages\":[{\"role\":\"user\",\"content\":\"hé \\u00e9 \\ud83d\\ude00\"}],\"model\":\"m\"}".utf8)
        XCTAssertEqual(try scan(ok).members[0].map { String(decoding: ok[$0], as: UTF8.self) }, "\"m\"")
        for bad in ["{\"a\":[\"\\ud800\"]}", "{\"a\":{\"b\":\"x\ty\"}}", "{\"a\":[1,]}", "{\"a\":\"\\q\"}"] {
            XCTAssertThrowsError(try scan(Array(bad.utf8)), bad)
        }
        XCTAssertThrowsError(try scan([0x7B, 0x22, 0x61, 0x22, 0x3A, 0x22, 0xED, 0xA0, 0x80, 0x22, 0x7D]), "an encoded surrogate")
        XCTAssertThrowsError(try scan([0x7B, 0x22, 0x61, 0x22, 0x3A, 0x22, 0xC0, 0xAF, 0x22, 0x7D]), "an overlong encoding")
        XCTAssertNoThrow(try scan([0x7B, 0x22, 0x61, 0x22, 0x3A, 0x22, 0xF0, 0x9F, 0x98, 0x80, 0x22, 0x7D]))
        // A name the gateway reads is refused twice, in any spelling; other duplicates (and nested
        // ones) are the provider's to judge.
        XCTAssertThrowsError(try scan(Array("{\"model\":\"a\",\"mod\\u0065l\":\"b\"}".utf8)))
        XCTAssertThrowsError(try scan(Array("{\"model\":\"a\",\"x\":1,\"model\":\"b\"}".utf8)))
        XCTAssertNoThrow(try scan(Array("{\"x\":1,\"x\":2}".utf8)))
        XCTAssertNoThrow(try scan(Array("{\"x\":{\"y\":1,\"y\":2}}".utf8)))
    }

    /// Strings end a word at a time for their first 32 bytes, then by `memchr`: an escaped
    /// quote, an escaped backslash before the closing quote (or a run of them), or an escape in a
    /// name, at every position of names and values of 0–48 bytes (inside the words, across the
    /// hand-over to `memchr`, at the end of the text), read as the strict reader reads them; the
    /// guarded scan gives up on an escaped name, never misreads it.
    /// String literals are read eight plain bytes a word: a byte to check (an escape, UTF-8, a
    /// control or invalid byte, the closing quote, the end of the text) at every position of
    /// every alignment is found, and the value is the one the bytes spell.
    func testStringsWithAByteToCheckAtEveryPosition() {
        let valid: [([UInt8], String)] = [(Array("\\n".utf8), "\n"), (Array("é".utf8), "é"), ([0x7F], "\u{7F}"),
                                          (Array("😀".utf8), "😀"), (Array("\\u00e9".utf8), "é"), (Array("\\/".utf8), "/")]
        let invalid: [[UInt8]] = [[0x01], [0x1F], [0x0A], [0xFF], [0xC3], [0xED, 0xA0, 0x80], Array("\\x".utf8), [0x22]]
        for lead in 0...3 {
            for length in 0...40 {
                for at in 0...length {
                    let pad = [UInt8](repeating: 0x20, count: lead)
                    func literal(_ piece: [UInt8]) -> [UInt8] {
                        var t = [UInt8](repeating: UInt8(ascii: "a"), count: length)
                        t.insert(contentsOf: piece, at: at)
                        return pad + [0x22] + t + [0x22]
                    }
                    for (piece, text) in valid {
                        let want = String(repeating: "a", count: at) + text + String(repeating: "a", count: length - at)
                        XCTAssertEqual(try? JSONReader.parse(literal(piece)), .string(want), "\(piece) at \(at) of \(length)")
                    }
                    for piece in invalid {
                        XCTAssertNil(try? JSONReader.parse(literal(piece)), "\(piece) at \(at) of \(length)")
                    }
                }
                // Unterminated, whatever the alignment of its end.
                XCTAssertNil(try? JSONReader.parse([UInt8](repeating: 0x20, count: lead) + [0x22] + [UInt8](repeating: 0x61, count: length)))
            }
        }
    }

    func testStringEndsAtEveryPositionAgreeWithTheStrictReader() throws {
        let escapes = ["\\\"", "\\\\", "\\n", "\\u0041", "\\\\\\\""]
        for length in 0...48 {
            for at in 0...length {
                for esc in escapes {
                    var text = String(repeating: "a", count: length)
                    text.insert(contentsOf: esc, at: text.index(text.startIndex, offsetBy: at))
                    let plain = String(repeating: "m", count: length)
                    for doc in ["{\"model\":\"\(text)\",\"n\":1}", "{\"\(text)\":1,\"model\":\"\(plain)\"}",
                                "{\"model\":\"\(plain)\"}", "{\"x\":[\"\(text)\"],\"model\":\"\(text)\"}"] {
                        let bytes = Array(doc.utf8)
                        let strict = try bytes.withUnsafeBytes { try JSONReader.topLevelMembers(["model", "n"], in: $0) }
                        let lenient = bytes.withUnsafeBytes { JSONReader.lenientTopLevelMembers(["model", "n"], in: $0) }
                        XCTAssertEqual(lenient?.members, strict.members, doc)
                        if let guarded = bytes.withUnsafeBytes({ JSONReader.lenientTopLevelMembers(["model", "n"], in: $0, guarded: true) }) {
                            XCTAssertEqual(guarded.members, strict.members, doc)
                        }
                        XCTAssertEqual(try bytes.withUnsafeBytes { try JSONReader.memberScan(["model", "n"], in: $0) }.members, strict.members, doc)
                    }
                }
            }
        }
        // A text that ends inside a string, after a backslash or not, is no object.
        for cut in ["{\"model\":\"abcdefghijklmnopqrstu", "{\"model\":\"abc\\\"", "{\"model\":\"abcdefgh\\"] {
            XCTAssertNil(Array(cut.utf8).withUnsafeBytes { JSONReader.lenientTopLevelMembers(["model"], in: $0) }, cut)
        }
    }

    /// The lenient scan agrees with the strict one on valid documents.
    func testLenientScanAgreesWithTheStrictOne() throws {
        let docs = ["{\"id\":\"x\",\"choices\":[{\"delta\":{\"content\":\"a \\\"q\\\" }\"}}],\"usage\":{\"total_tokens\":12}}",
                    "{ \"usage\" : null , \"choices\" : [] }", "{\"usage\":7}", "{}", "{\"a\":\"\\\\\",\"usage\":{\"x\":[1,{\"y\":\"}\"}]}}",
                    "{\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4,\"total_tokens\":7}}"]
        for d in docs {
            let bytes = Array(d.utf8)
            let strict = try bytes.withUnsafeBytes { try JSONReader.topLevelMembers(["usage", "choices"], in: $0) }
            let lenient = bytes.withUnsafeBytes { JSONReader.lenientTopLevelMembers(["usage", "choices"], in: $0) }
            XCTAssertEqual(lenient?.members, strict.members, d)
            XCTAssertEqual(lenient?.isEmpty, strict.isEmpty, d)
            // Stopping once both are found gives the same ranges.
            let early = bytes.withUnsafeBytes { JSONReader.lenientTopLevelMembers(["usage", "choices"], in: $0, untilFound: true) }
            XCTAssertEqual(early?.members, strict.members, d)
        }
        // A repeated name counts once: the scan goes on to find the other.
        let dup = Array("{\"a\":1,\"a\":2,\"b\":3}".utf8)
        let d = dup.withUnsafeBytes { JSONReader.lenientTopLevelMembers(["a", "b"], in: $0, untilFound: true) }
        XCTAssertEqual(d?.member(1), 17..<18)
        XCTAssertNil(Array("[1]".utf8).withUnsafeBytes { JSONReader.lenientTopLevelMembers(["a"], in: $0) })
        XCTAssertNil(Array("{\"a\":\"open".utf8).withUnsafeBytes { JSONReader.lenientTopLevelMembers(["a"], in: $0) })
    }

    /// One pass finding a nested object's members gives what two passes give — the outer
    /// object's members, then that object's read alone — on documents built of valid and broken
    /// pieces: the nested value an object, another value, absent, repeated; a nested name
    /// repeated, escaped; whitespace; junk between members; mutations of them all.
    func testNestedMembersInOnePassAsInTwo() throws {
        var rng = SeededRandom(seed: 0x2E57)
        let outerNames: JSONNames = ["type", "delta", "index"], innerNames: JSONNames = ["type", "text", "partial_json"]
        let outer = outerNames.strings, inner = innerNames.strings
        let innerPieces = [#""type":"text_delta""#, #""text":"a \"b\" }""#, #""partial_json":"{\"k\":1}""#, #""t\u0065xt":"x""#,
                           #""other":[1,{"text":2}]"#, #""text":"y""#, #""signature":"s""#, #""type" : "input_json_delta""#]
        func innerObject() -> String {
            var ps: [String] = []
            for _ in 0..<Int.random(in: 0...4, using: &rng) { ps.append(innerPieces[Int.random(in: 0..<innerPieces.count, using: &rng)]) }
            return "{" + ps.joined(separator: Int.random(in: 0..<6, using: &rng) == 0 ? " , " : ",") + "}"
        }
        let deltas = ["[1,2]", #""{}""#, "null", "7"]
        var nestedFound = 0
        for round in 0..<4_000 {
            var ps: [String] = []
            for _ in 0..<Int.random(in: 0...4, using: &rng) {
                switch Int.random(in: 0..<7, using: &rng) {
                case 0, 1: ps.append(#""delta":"# + innerObject())
                case 2: ps.append(#""delta":"# + deltas[Int.random(in: 0..<deltas.count, using: &rng)])
                case 3: ps.append(#""type":"content_block_delta""#)
                case 4: ps.append(#""index":\#(Int.random(in: 0..<3, using: &rng))"#)
                case 5: ps.append(#""d\u0065lta":"# + innerObject())
                default: ps.append(#""x":{"delta":{"text":1}}"#)
                }
            }
            var doc = Array((" {" + ps.joined(separator: ",") + "} ").utf8)
            if round % 3 == 0 { doc = mutated(doc, alphabet: Array(#"{}[]",:\ tx1"#.utf8), maxEdits: 2, using: &rng) }
            let one: (JSONReader.TopLevelScan, JSONReader.TopLevelScan?)? = doc.withUnsafeBytes {
                try? JSONReader.topLevelMembers(outerNames, in: $0, nestedIn: 1, innerNames)
            }
            let twoOuter = doc.withUnsafeBytes { try? JSONReader.topLevelMembers(outer, in: $0) }
            let context = String(decoding: doc, as: UTF8.self)
            guard let o = twoOuter else { XCTAssertNil(one.map(\.0.members), context); continue }
            let d = o.member(1)
            let isObject = d.map { doc[$0.lowerBound] == UInt8(ascii: "{") } ?? false
            let twoInner: JSONReader.TopLevelScan?? = isObject ? doc.withUnsafeBytes { b in
                Optional(try? JSONReader.topLevelMembers(inner, in: UnsafeRawBufferPointer(rebasing: b[d!])))
            } : .some(nil)
            if isObject, case .some(nil) = twoInner {   // the inner object refused alone (a repeated name)
                XCTAssertNil(one.map(\.0.members), context); continue
            }
            guard let (oneOuter, oneInner) = one else { XCTFail("one pass refused: \(context)"); continue }
            XCTAssertEqual(oneOuter.members, o.members, context)
            XCTAssertEqual(oneOuter.afterBrace, o.afterBrace, context)
            let shifted = (twoInner ?? nil).map { s in s.members.map { $0.map { ($0.lowerBound + d!.lowerBound)..<($0.upperBound + d!.lowerBound) } } }
            XCTAssertEqual(oneInner?.members, shifted, context)
            if oneInner != nil { nestedFound += 1 }
        }
        XCTAssertGreaterThan(nestedFound, 300)
    }

    /// Large nested bodies (messages, tools: most of a request's bytes sit below the top level,
    /// where the scan only follows strings and brackets): random valid documents up to six deep,
    /// with strings holding brackets, quotes, backslashes and escapes of every length, read in all
    /// three modes as the strict reader reads them.
    func testNestedValuesAreSkippedAsTheStrictReaderReadsThem() throws {
        var rng = SeededRandom(seed: 7)
        let atoms = ["a", "{", "}", "[", "]", ",", ":", "\\\"", "\\\\", "\\n", "\\u005d", " ", "é"]
        func string() -> String {
            var t = "\""
            for _ in 0..<Int.random(in: 0...12, using: &rng) {
                let a = atoms[Int.random(in: 0..<atoms.count, using: &rng)]
                t += Int.random(in: 0..<4, using: &rng) == 0 ? String(repeating: a, count: Int.random(in: 1...20, using: &rng)) : a
            }
            return t + "\""
        }
        func value(_ depth: Int) -> String {
            switch depth >= 6 ? Int.random(in: 0..<3, using: &rng) : Int.random(in: 0..<6, using: &rng) {
            case 0: return string()
            case 1: return ["1", "-2.5e3", "true", "null", "false"][Int.random(in: 0..<5, using: &rng)]
            case 2: return "[]"
            case 3, 4:
                let n = Int.random(in: 0...4, using: &rng)
                return "{" + (0..<n).map { "\"k\($0)\"" + [":", " : "][Int.random(in: 0..<2, using: &rng)] + value(depth + 1) }.joined(separator: ",") + "}"
            default:
                return "[ " + (0..<Int.random(in: 0...4, using: &rng)).map { _ in value(depth + 1) }.joined(separator: ", ") + "]"
            }
        }
        let names: JSONNames = ["model", "n", "tools"]
        for _ in 0..<3_000 {
            var members = ["\"model\":" + value(1), "\"tools\":" + value(1), "\"x\":" + value(1), "\"n\": " + value(1)]
            members.shuffle(using: &rng)
            let bytes = Array(("{" + members.joined(separator: ",") + "}").utf8)
            let strict = try bytes.withUnsafeBytes { try JSONReader.topLevelMembers(names.strings, in: $0) }
            bytes.withUnsafeBytes { b in
                let text = String(decoding: bytes, as: UTF8.self)
                XCTAssertEqual(JSONReader.lenientTopLevelMembers(names, in: b)?.members, strict.members, text)
                XCTAssertEqual(JSONReader.lenientTopLevelMembers(names, in: b, guarded: true)?.members, strict.members, text)
                XCTAssertEqual(JSONReader.lenientTopLevelMembers(names, in: b, untilFound: true)?.members, strict.members, text)
            }
        }
    }

    /// The guarded scan gives up exactly where a lenient reader could disagree with a provider.
    func testGuardedScanFallsBackToTheStrictReader() throws {
        func guarded(_ s: String) -> JSONReader.TopLevelScan? {
            Array(s.utf8).withUnsafeBytes { JSONReader.lenientTopLevelMembers(["model"], in: $0, guarded: true) }
        }
        XCTAssertNotNil(guarded("{\"model\":\"a\",\"messages\":[{\"model\":1}]}"))
        XCTAssertNil(guarded("{\"model\":\"a\",\"mod\\u0065l\":\"b\"}"), "an escaped name must go to the strict reader")
        XCTAssertNil(guarded("{\"model\":\"a\",\"model\":\"b\"}"), "a duplicate must go to the strict reader")
        XCTAssertThrowsError(try Array("{\"model\":\"a\",\"mod\\u0065l\":\"b\"}".utf8).withUnsafeBytes { try JSONReader.memberScan(["model"], in: $0) })
        XCTAssertThrowsError(try Array("{\"model\":\"a\",\"model\":\"b\"}".utf8).withUnsafeBytes { try JSONReader.memberScan(["model"], in: $0) })
        let ok = Array("{\"x\":[1,2],\"model\" : \"m\"}".utf8)
        XCTAssertEqual(try ok.withUnsafeBytes { try JSONReader.memberScan(["model"], in: $0) }.member(0).map { String(decoding: ok[$0], as: UTF8.self) }, "\"m\"")
    }
}
