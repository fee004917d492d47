// The JSON toolkit against FoundationEssentials' JSONDecoder on the translation path: each data
// payload of an Anthropic Messages stream decoded to a value tree, as the adapter does per event.
// Usage: JSONBench [rounds]   (release build: Benchmarks/json.sh)
import FoundationEssentials
import PortcullisJSON
#if canImport(Glibc)
import Glibc
#endif

/// A JSON tree decoded with JSONDecoder (what the gateway used before PortcullisJSON).
indirect enum DecodedValue: Decodable {
    case string(String), number(Double), bool(Bool), null, array([DecodedValue]), object([String: DecodedValue])
    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let n = try? c.decode(Double.self) { self = .number(n) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([DecodedValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: DecodedValue].self)) }
    }
}

func now() -> Double { var t = timespec(); clock_gettime(CLOCK_MONOTONIC, &t); return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9 }

let events: [[UInt8]] = [
    #"{"type":"message_start","message":{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":19,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1}}}"#,
    #"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
    #"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"The"}}"#,
    #"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" gate"}}"#,
    #"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" is open, and a longer sentence follows here."}}"#,
    #"{"type":"content_block_stop","index":0}"#,
    #"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":5}}"#,
    #"{"type":"message_stop"}"#,
].map { Array($0.utf8) }

let rounds = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1]) ?? 20000 : 20000
func fmt(_ v: Double) -> String { String((v * 100).rounded() / 100) }
func measure(_ name: String, _ body: ([UInt8]) -> Int) -> (Double, Int) {
    var sink = 0
    for e in events { sink &+= body(e) }          // warm-up
    let t0 = now()
    for _ in 0..<rounds { for e in events { sink &+= body(e) } }
    let perEvent = (now() - t0) / Double(rounds * events.count) * 1e6
    print("\(name): \(fmt(perEvent)) µs per event")
    return (perEvent, sink)
}
let decoder = JSONDecoder()
let (ours, a) = measure("PortcullisJSON.JSONReader") { b in
    if case .object(let o)? = try? JSONReader.parse(b) { return o.members.count }
    return 0
}
let (theirs, b) = measure("FoundationEssentials.JSONDecoder") { b in
    if case .object(let o)? = try? decoder.decode(DecodedValue.self, from: Data(b)) { return o.count }
    return 0
}
print("ratio (JSONDecoder / JSONReader): \(fmt(theirs / ours))×  (checksum \((a &+ b) % 7))")

// The request-body scan (`JSONReader.memberScan`, the guarded lenient scan every request with a
// limiter or an alias route runs once) on five bodies: the harness's 80-byte completion, a 4 KB
// conversation, a 38 KB tools-heavy agent request (thousands of short strings in nested schemas),
// 24 KB of code in one message (a backslash every few bytes) and a 63 KB single document. Reported per body and per byte, so a change to the scan reads
// here without the proxy around it.
let bodyNames: JSONNames = ["model", "max_tokens", "max_completion_tokens", "stream", "stream_options"]
func message(_ role: String, _ text: String) -> String { #"{"role":"\#(role)","content":"\#(text)"}"# }
let conversation = (0..<12).map { message($0 % 2 == 0 ? "user" : "assistant",
                                          String(repeating: "Tell me about the gate, the wall and the moat, in some detail please. ", count: 4)) }
let tool = { (k: Int) -> String in
    let props = (0..<12).map { p in
        #""p\#(p)":{"type":"string","description":"Field \#(p) of tool \#(k)","enum":["a","b","c","d"]}"#
    }.joined(separator: ",")
    return #"{"type":"function","function":{"name":"tool_\#(k)","description":"Does thing \#(k).","parameters":{"type":"object","properties":{\#(props)},"required":["p0","p1"]}}}"#
}
let bodies: [(String, [UInt8])] = [
    ("80-byte completion", #"{"model":"chat-default","messages":[{"role":"user","content":"Open the gate."}]}"#),
    ("4 KB conversation", #"{"model":"chat-default","messages":[\#(message("system", String(repeating: "You are a helpful assistant. ", count: 20))),\#(conversation.joined(separator: ","))],"max_tokens":512}"#),
    ("38 KB tools-heavy", #"{"model":"chat-default","messages":[\#(message("user", "Plan the siege."))],"tools":[\#((0..<34).map(tool).joined(separator: ","))],"stream":true}"#),
    ("24 KB code with escapes", #"{"model":"chat-default","messages":[\#(message("user", String(repeating: #"    if let name = row[\"name\"] {\n        print(\"hello, \\(name)\")\n    }\n"#, count: 300)))],"stream":false}"#),
    ("63 KB document", #"{"model":"chat-default","messages":[\#(message("user", String(repeating: "The portcullis is lowered at dusk and raised at dawn. ", count: 1200)))],"max_tokens":256}"#),
].map { ($0.0, Array($0.1.utf8)) }
print("\nrequest-body scan (JSONReader.memberScan, the names the limiter and alias router read):")
for (name, body) in bodies {
    let reps = max(200, rounds * 8 / max(1, body.count / 80))
    var sink = 0
    body.withUnsafeBytes { b in
        for _ in 0..<100 { sink &+= (try? JSONReader.memberScan(bodyNames, in: b))?.afterBrace ?? 0 }
        let t0 = now()
        for _ in 0..<reps { sink &+= (try? JSONReader.memberScan(bodyNames, in: b))?.afterBrace ?? 0 }
        let ns = (now() - t0) / Double(reps) * 1e9
        print("  \(name) (\(body.count) bytes): \(fmt(ns / 1000)) µs per body, \(fmt(ns / Double(body.count))) ns per byte  (checksum \(sink % 7))")
    }
}
