/// Serialises a `JSONValue` (compact, members in their order, numbers as they were written).
/// For bodies the gateway builds itself (provider translation); bodies it only forwards are
/// edited in place with `JSONMemberEdits` instead.
public enum JSONWriter {
    public static func bytes(_ v: JSONValue) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        write(v, &out)
        return out
    }

    public static func write(_ v: JSONValue, _ out: inout [UInt8]) {
        switch v {
        case .null: out.append(contentsOf: "null".utf8)
        case .bool(let b): out.append(contentsOf: (b ? "true" : "false").utf8)
        case .numberText(let t): out.append(contentsOf: t.utf8)
        case .string(let s): string(s, &out)
        case .array(let items):
            out.append(UInt8(ascii: "["))
            for (i, item) in items.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                write(item, &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let o):
            out.append(UInt8(ascii: "{"))
            for (i, m) in o.members.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                string(m.name, &out)
                out.append(UInt8(ascii: ":"))
                write(m.value, &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    /// `s` as a JSON string literal, as text (for bodies assembled around fixed JSON).
    public static func quoted(_ s: String) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(s.utf8.count + 2)
        string(s, &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// A JSON string literal: `"` `\` and controls escaped, everything else as UTF-8.
    public static func string(_ s: String, _ out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for c in s.utf8 {
            switch c {
            case 0x22: out.append(contentsOf: [0x5C, 0x22])
            case 0x5C: out.append(contentsOf: [0x5C, 0x5C])
            case 0x0A: out.append(contentsOf: [0x5C, UInt8(ascii: "n")])
            case 0x0D: out.append(contentsOf: [0x5C, UInt8(ascii: "r")])
            case 0x09: out.append(contentsOf: [0x5C, UInt8(ascii: "t")])
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                out.append(contentsOf: [0x5C, UInt8(ascii: "u"), 0x30, 0x30, hex[Int(c >> 4)], hex[Int(c & 15)]])
            default: out.append(c)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}

extension JSONValue {
    public static func int(_ n: Int) -> JSONValue { .numberText(String(n)) }
    public static func obj(_ members: [(String, JSONValue)]) -> JSONValue { .object(JSONObject(members.map { (name: $0.0, value: $0.1) })) }
}
