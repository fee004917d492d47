import PortcullisConfig
import PortcullisServer
import PortcullisRedis
#if canImport(Glibc)
import Glibc
#endif

/// `portcullis [--config FILE]`            run the gateway (no file: the embedded demo config)
/// `portcullis check --config FILE`        validate a config file; exit 0 when valid, 1 if not
/// `portcullis version` (also `--version`, `-v`)
let usage = """
usage: portcullis [--config FILE]          run the gateway (default: embedded demo config)
       portcullis check --config FILE      validate FILE and exit 0 (valid) or 1 (invalid)
       portcullis version                  print the version (also --version, -v)

"""

func fail(_ message: String) -> Never {
    var line = message + "\n"
    line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
    exit(1)
}

var args = Array(CommandLine.arguments.dropFirst())
var command = "run"
if let first = args.first, !first.hasPrefix("-") {
    command = first
    args.removeFirst()
}
var configPath: String?
var i = 0
while i < args.count {
    switch args[i] {
    case "--config", "-c":
        guard i + 1 < args.count else { fail("--config needs a file\n" + usage) }
        configPath = args[i + 1]; i += 2
    case "--help", "-h":
        print(usage, terminator: ""); exit(0)
    case "--version", "-v":
        command = "version"; i += 1
    default:
        fail("unknown argument '\(args[i])'\n" + usage)
    }
}

func loadConfiguration(_ configPath: String?) -> GatewayConfiguration {
    do {
        if let path = configPath { return try ConfigurationLoader.load(file: path) }
        return try ConfigurationLoader.parse(DefaultConfiguration.yaml, file: "<embedded default>",
                                             environment: ProcessEnvironment.current())
    } catch {
        fail("portcullis: invalid configuration: \(error)")
    }
}

switch command {
case "run":
    let config = loadConfiguration(configPath)
    exit(Gateway(configuration: config, configPath: configPath).run())
case "check":
    guard configPath != nil else { fail("check needs --config FILE\n" + usage) }
    let config = loadConfiguration(configPath)
    do { _ = try Gateway.loadKeyRing(config) } catch { fail("portcullis: invalid configuration: \(error)") }
    print("\(config.source): OK (\(config.providers.count) provider(s), \(config.routes.count) route(s), \(config.server.workers) worker(s))")
    exit(0)
case "version":
    print("portcullis 0.1.0 (hiredis \(HiredisInfo.version))")
    exit(0)
default:
    fail("unknown command '\(command)'\n" + usage)
}
