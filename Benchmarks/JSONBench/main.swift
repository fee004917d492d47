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
