import CLinux
import PortcullisCore
import PortcullisEventLoop
#if canImport(Glibc)
import Glibc
#endif

/// The in-repo fake LLM provider: OpenAI chat-completions wire format (JSON and SSE, usage
/// chunks, error bodies) with per-request scripted delays and failures (see `FakeScript`).
///
///     FakeProvider [--listen 127.0.0.1:9000] [--workers 1] [--tokens 5] [--inter-event-delay-ms 0]
///                  [--first-byte-delay-ms 0] [--response-headers openai]
let usage = "usage: FakeProvider [--listen HOST:PORT] [--workers N] [--tokens N] [--first-byte-delay-ms N] [--inter-event-delay-ms N] [--response-headers openai]\n"

func die(_ m: String) -> Never {
    var s = m + "\n"
    s.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
    exit(2)
}

var listen = "127.0.0.1:9000"
var workers = 1
var defaults = FakeScript()
var args = Array(CommandLine.arguments.dropFirst())
while !args.isEmpty {
    let a = args.removeFirst()
    guard let v = args.first else { die(usage) }
    args.removeFirst()
    switch a {
    case "--listen": listen = v
    case "--workers": workers = max(1, Int(v) ?? 1)
    case "--tokens": defaults.tokens = Int(v) ?? defaults.tokens
    case "--first-byte-delay-ms": defaults.firstByteDelayMs = Int(v) ?? 0
    case "--inter-event-delay-ms": defaults.interEventDelayMs = Int(v) ?? 0
    case "--response-headers":
        guard v == "openai" else { die(usage) }
        defaults.extraHeaderLines = OpenAIWire.responseHeaderLines
    default: die(usage)
    }
}
guard let address = SocketAddress.parse(listen) else { die("bad --listen address \(listen)") }

var set = sigset_t()
sigemptyset(&set)
for s in [SIGTERM, SIGINT, SIGPIPE] { sigaddset(&set, s) }
pthread_sigmask(SIG_BLOCK, &set, nil)

Syscall.raiseFileLimit()
let script = defaults
for i in 0..<workers {
    let fd: Int32
    do { fd = try Sockets.listen(on: address) } catch { die("FakeProvider: \(error)") }
    spawnThread(name: "fake-\(i)") {
        do {
            let loop = try EventLoop(index: i)
            let l = FakeListener(fd: fd, loop: loop, defaults: script)
            try loop.registerListener(fd: fd, handler: l)
            loop.run()
        } catch {
            die("FakeProvider worker: \(error)")
        }
    }
}
var line = "FakeProvider listening on \(address)\n"
line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
var sig: Int32 = 0
while sigwait(&set, &sig) == 0 {
    if sig == SIGTERM || sig == SIGINT { exit(0) }
}
