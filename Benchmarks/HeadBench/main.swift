import PortcullisHTTP
#if canImport(Glibc)
import Glibc
#endif
let n = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1]) ?? 1000 : 1000
let token = String(repeating: "eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMSJ9", count: 7)
let req = Array("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: Bearer \(token)\r\nContent-Length: 80\r\n\r\n".utf8) + [UInt8](repeating: 0x7B, count: 80)
let resp = Array("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 554\r\nx-fake-received-bytes: 80\r\n\r\n".utf8) + [UInt8](repeating: 0x7B, count: 554)
let rp = HTTPRequestParser()
let sp = HTTPResponseParser()
var storage = ResponseHeadStorage()
var sink = 0
for _ in 0..<n {
    req.withUnsafeBytes { b in
        var st = HeadScanState()
        if case .complete(let h, let c) = rp.parse(b, resuming: &st) { sink &+= c &+ h.fields.count }
    }
    resp.withUnsafeBytes { b in
        if case .complete(let h, let c) = sp.parse(b, requestMethod: "POST", storage: &storage) { sink &+= c &+ h.fields.count }
    }
}
print(sink)
