import XCTest
import Foundation
import PortcullisCore
import PortcullisTestSupport
@testable import PortcullisConfig

/// The example configuration the tests mutate (line numbers below refer to it).
let goodConfigYAML = """
    server:
      listen: ["127.0.0.1:8080", "[::1]:8081"]
      workers: 2
      max_connections: 10000
      max_header_bytes: 16384
      max_body_bytes: 4194304
      header_timeout: 10s
      keepalive_timeout: 75s
    providers:
      local: { base_url: "http://127.0.0.1:9000", kind: openai }
      openai: { base_url: "https://api.openai.com", kind: openai, api_key_env: OPENAI_API_KEY }
    routes:
      - path: /v1/chat/completions
        provider: local
        timeouts: { connect: 5s, first_byte: 60s, idle: 30s, total: 600s }
      - path: /v1/*
        provider: openai
        timeouts: { connect: 500ms, first_byte: 2m }
    """

/// Config loading: a good file gives typed values; each kind of bad file gives its
/// file:line:column and key.
final class ConfigurationLoaderTests: XCTestCase {
    let good = goodConfigYAML

    func load(_ yaml: String, env: [String: String] = [:]) throws -> GatewayConfiguration {
        try ConfigurationLoader.parse(yaml, file: "test.yaml", environment: env)
    }

    func error(_ yaml: String, file: StaticString = #filePath, line: UInt = #line) -> String {
        do {
            _ = try load(yaml)
            XCTFail("expected a config error", file: file, line: line)
            return ""
        } catch {
            return "\(error)"
        }
    }

    func testGoodFile() throws {
        let c = try load(good, env: ["OPENAI_API_KEY": "sk-test"])
        XCTAssertEqual(c.server.listen.map(\.description), ["127.0.0.1:8080", "[::1]:8081"])
        XCTAssertEqual(c.server.workers, 2)
        XCTAssertEqual(c.server.headerTimeout, .seconds(10))
        XCTAssertEqual(c.providers.count, 2)
        let openai = try XCTUnwrap(c.provider(named: "openai"))
        XCTAssertEqual(openai.baseURL, UpstreamURL(tls: true, host: "api.openai.com", port: 443, basePath: ""))
        XCTAssertEqual(openai.apiKey, "sk-test")
        XCTAssertEqual(c.routes[0].timeouts, RouteTimeouts(connect: .seconds(5), firstByte: .seconds(60), idle: .seconds(30), total: .seconds(600)))
        XCTAssertEqual(c.routes[1].timeouts.connect, .milliseconds(500))
        XCTAssertEqual(c.routes[1].timeouts.firstByte, .seconds(120))
        XCTAssertEqual(c.routes[1].timeouts.idle, .seconds(30))  // default
        XCTAssertTrue(c.routes[1].matches("/v1/models"))
        XCTAssertFalse(c.routes[0].matches("/v1/chat/completions/x"))
    }

    func testRoutePathsMatchByteForByte() throws {
        let c = try load("providers: { p: { base_url: 'http://h:1' } }\nroutes: [ { path: '/v1/*', provider: p }, { path: /caf\u{E9}, provider: p } ]\n")
        XCTAssertTrue(c.routes[0].matches("/v1/"))
        XCTAssertTrue(c.routes[0].matches("/v1/chat/completions"))
        XCTAssertFalse(c.routes[0].matches("/v1"))
        XCTAssertFalse(c.routes[0].matches("/v2/chat"))
        XCTAssertTrue(c.routes[1].matches("/caf\u{E9}"))
        XCTAssertFalse(c.routes[1].matches("/cafe\u{301}"))   // canonically equivalent, other bytes
    }

    func testAutoWorkersAndDefaults() throws {
        let c = try load("server: { workers: auto }\nproviders: { p: { base_url: 'http://h:1/base/' } }\nroutes: [ { path: /x, provider: p } ]\n")
        XCTAssertGreaterThanOrEqual(c.server.workers, 1)
        XCTAssertEqual(c.server.listen.map(\.description), ["127.0.0.1:8080"])
        XCTAssertEqual(c.providers[0].baseURL.basePath, "/base")
        XCTAssertEqual(c.providers[0].baseURL.authority, "h:1")
        XCTAssertEqual(c.server.maxBodyBytes, 4_194_304)
    }

    func testAddedHeaderLists() throws {
        let defaults = try load(good)
        XCTAssertEqual(defaults.server.upstreamHeaders, [.requestID, .forwarded])
        XCTAssertEqual(defaults.server.responseHeaders, [.requestID, .provider])
        let none = try load(good.replacingOccurrences(of: "  workers: 2", with: "  workers: 2\n  upstream_headers: []\n  response_headers: []"))
        XCTAssertEqual(none.server.upstreamHeaders, [])
        XCTAssertEqual(none.server.responseHeaders, [])
        let some = try load(good.replacingOccurrences(of: "  workers: 2", with: "  workers: 2\n  upstream_headers: [request_id]\n  response_headers: provider"))
        XCTAssertEqual(some.server.upstreamHeaders, [.requestID])
        XCTAssertEqual(some.server.responseHeaders, [.provider])
    }

    func testBadAddedHeaderListsNameLineAndKey() {
        func bad(_ line: String) -> String { error(good.replacingOccurrences(of: "  workers: 2", with: "  workers: 2\n" + line)) }
        XCTAssertEqual(bad("  upstream_headers: [request_id, provider]"),
                       "test.yaml:4:34: server.upstream_headers: expected one of request_id, forwarded, found 'provider'")
        XCTAssertEqual(bad("  response_headers: [forwarded]"),
                       "test.yaml:4:22: server.response_headers: expected one of request_id, provider, found 'forwarded'")
        XCTAssertEqual(bad("  response_headers: [provider, provider]"),
                       "test.yaml:4:32: server.response_headers: 'provider' is listed twice")
        XCTAssertTrue(bad("  upstream_headers: off").hasPrefix("test.yaml:4:21: server.upstream_headers: expected one of"))
        XCTAssertTrue(bad("  upstream_headers: { a: 1 }").hasPrefix("test.yaml:4:21: server.upstream_headers: expected a list of strings"))
    }

    func testMissingKeyEnvIsNotFatal() throws {
        let c = try load(good, env: [:])
        XCTAssertNil(c.provider(named: "openai")?.apiKey)
    }

    func testEndpointsKeyPoolsAcrossProvidersAndGenerations() throws {
        let a = try load(good), b = try load(good.replacingOccurrences(of: "  local:", with: "  renamed:")
                                                    .replacingOccurrences(of: "provider: local", with: "provider: renamed"))
        // Same scheme/host/port/CA → same pool slot, whatever the provider is called or where it sits.
        XCTAssertEqual(a.provider(named: "local")?.poolSlot, b.provider(named: "renamed")?.poolSlot)
        XCTAssertNotEqual(a.provider(named: "local")?.poolSlot, a.provider(named: "openai")?.poolSlot)
    }

    func testAPIKeyFileUnderTheCredentialsDirectory() throws {
        let dir = NSTemporaryDirectory() + "creds-\(getpid())"
        mkdir(dir, 0o700)
        _ = FileManager.default.createFile(atPath: dir + "/k", contents: Data("sk-1\n".utf8))
        let yaml = good.replacingOccurrences(of: "api_key_env: OPENAI_API_KEY", with: "api_key_file: k")
        let c = try load(yaml, env: ["CREDENTIALS_DIRECTORY": dir])
        XCTAssertEqual(c.provider(named: "openai")?.apiKey, "sk-1")
        XCTAssertTrue(error(yaml).contains("api_key_file: cannot read 'k'"))
        let both = good.replacingOccurrences(of: "api_key_env: OPENAI_API_KEY", with: "api_key_env: X, api_key_file: k")
        XCTAssertTrue(error(both).contains("set api_key_env or api_key_file, not both"), error(both))
        XCTAssertEqual(CredentialFile.resolve("/abs", environment: ["CREDENTIALS_DIRECTORY": dir]), "/abs")
    }

    func testLogAndMetricsKeys() throws {
        let c = try load(good + "\nlog: { format: text, buffer_bytes: 65536 }\nmetrics: { tenant_labels: false, max_tenants: 5 }\n")
        XCTAssertEqual(c.log.format, .text)
        XCTAssertEqual(c.log.bufferBytes, 65536)
        XCTAssertFalse(c.metrics.tenantLabels)
        XCTAssertEqual(c.metrics.maxTenants, 5)
        XCTAssertEqual(try load(good).log.format, .json)
        XCTAssertTrue(error(good + "\nlog: { format: xml }\n").contains("log.format: expected json or text"))
    }

    func testSyntaxError() {
        let e = error("server:\n  listen: [\"a\"\n  workers: 2\n")
        XCTAssertTrue(e.hasPrefix("test.yaml:"), e)
        XCTAssertTrue(e.contains("YAML syntax error"), e)
    }

    func testBadDurationNamesLineAndKey() {
        let e = error(good.replacingOccurrences(of: "header_timeout: 10s", with: "header_timeout: 10 seconds"))
        XCTAssertTrue(e.hasPrefix("test.yaml:7:19: server.header_timeout:"), e)
    }

    func testUnknownKey() {
        let e = error(good.replacingOccurrences(of: "  workers: 2", with: "  wrokers: 2"))
        XCTAssertTrue(e.hasPrefix("test.yaml:3:3: server.wrokers: unknown key"), e)
    }

    func testBadListenAddress() {
        let e = error(good.replacingOccurrences(of: "\"[::1]:8081\"", with: "\"localhost:99999\""))
        XCTAssertTrue(e.hasPrefix("test.yaml:2:"), e)
        XCTAssertTrue(e.contains("server.listen"), e)
    }

    func testUnknownProviderInRoute() {
        let e = error(good.replacingOccurrences(of: "provider: openai", with: "provider: nope"))
        XCTAssertTrue(e.hasPrefix("test.yaml:17:15: routes[1].provider: unknown provider 'nope'"), e)
    }

    func testBadWorkers() {
        let e = error(good.replacingOccurrences(of: "workers: 2", with: "workers: many"))
        XCTAssertTrue(e.hasPrefix("test.yaml:3:12: server.workers:"), e)
    }

    func testBadBaseURL() {
        let e = error(good.replacingOccurrences(of: "http://127.0.0.1:9000", with: "ftp://x"))
        XCTAssertTrue(e.hasPrefix("test.yaml:10:"), e)
        XCTAssertTrue(e.contains("providers.local.base_url"), e)
    }

    func testIntegerOutOfRange() {
        let e = error(good.replacingOccurrences(of: "max_header_bytes: 16384", with: "max_header_bytes: 12"))
        XCTAssertTrue(e.hasPrefix("test.yaml:5:21: server.max_header_bytes: must be between"), e)
    }

    func testMissingSections() {
        XCTAssertTrue(error("server: {}\n").contains("providers: required key is missing"))
        XCTAssertTrue(error("providers: { p: { base_url: 'http://h:1' } }\n").contains("routes: required key is missing"))
        XCTAssertTrue(error("providers: { p: { kind: openai } }\nroutes: []\n").contains("providers.p.base_url: required key is missing"))
    }

    func testDuplicateKey() {
        let e = error("server: {}\nserver: {}\nproviders: {}\n")
        XCTAssertTrue(e.contains("test.yaml:2:1: server: duplicate key"), e)
    }

    func testTypeMismatch() {
        let e = error("server: [1, 2]\nproviders: {}\nroutes: []\n")
        XCTAssertTrue(e.hasPrefix("test.yaml:1:9: server: expected a mapping"), e)
    }

    func testLoadFromFileAndMissingFile() throws {
        let path = "/tmp/portcullis-config-test-\(getpid()).yaml"
        let f = fopen(path, "w")!
        fputs(good, f); fclose(f)
        defer { unlink(path) }
        XCTAssertNoThrow(try ConfigurationLoader.load(file: path, environment: [:]))
        XCTAssertThrowsError(try ConfigurationLoader.load(file: "/nonexistent/x.yaml", environment: [:])) { e in
            XCTAssertTrue("\(e)".hasPrefix("/nonexistent/x.yaml:0:0: cannot read the file"), "\(e)")
        }
    }

    func testDurations() {
        XCTAssertEqual(Duration64.parse("500ms"), .milliseconds(500))
        XCTAssertEqual(Duration64.parse("5s"), .seconds(5))
        XCTAssertEqual(Duration64.parse("2m"), .seconds(120))
        XCTAssertEqual(Duration64.parse("1h"), .seconds(3600))
        XCTAssertNil(Duration64.parse("5"))
        XCTAssertNil(Duration64.parse("s"))
        XCTAssertNil(Duration64.parse("-5s"))
        XCTAssertNil(Duration64.parse("5 s"))
    }
}

/// Mutated YAML: the loader answers with a config or a ConfigError naming a position, never crashes.
final class RandomConfigTests: XCTestCase {
    func testMutatedConfigsNeverCrash() {
        let base = Array(goodConfigYAML.utf8)
        var rng = SeededRandom(seed: 7)
        let alphabet = Array(":-[]{}'\"#&*!|> \n\t0a".utf8)
        for _ in 0..<1500 {
            let t = mutated(base, alphabet: alphabet, maxEdits: 4, using: &rng)
            do {
                _ = try ConfigurationLoader.parse(String(decoding: t, as: UTF8.self), file: "fuzz.yaml", environment: [:])
            } catch {
                XCTAssertTrue(error.description.hasPrefix("fuzz.yaml:"), error.description)
            }
        }
    }
}
