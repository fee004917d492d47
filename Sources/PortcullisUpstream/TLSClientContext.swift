import COpenSSL
import PortcullisCore

/// One OpenSSL `SSL_CTX` per provider: TLS ≥ 1.2, peer verification on, trust from the system
/// store or the provider's `ca_file`. Created at start-up; `SSL_CTX` is safe to share between
/// worker threads for creating connections. Lives for the process (or until a reload replaces it).
public final class TLSClientContext: @unchecked Sendable {
    let ctx: OpaquePointer

    public struct SetupError: Error, CustomStringConvertible {
        public let description: String
    }

    public init(caFile: String?) throws {
        guard let c = SSL_CTX_new(TLS_client_method()) else {
            throw SetupError(description: "SSL_CTX_new failed: \(TLSClientContext.lastError())")
        }
        ctx = c
        _ = pc_SSL_CTX_set_min_proto_version(c, pc_TLS1_2_VERSION())
        _ = pc_SSL_CTX_set_mode(c, pc_SSL_MODE_ENABLE_PARTIAL_WRITE() | pc_SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER() | pc_SSL_MODE_RELEASE_BUFFERS())
        SSL_CTX_set_verify(c, SSL_VERIFY_PEER, nil)
        if let ca = caFile {
            guard SSL_CTX_load_verify_locations(c, ca, nil) == 1 else {
                SSL_CTX_free(c)
                throw SetupError(description: "cannot load CA file \(ca): \(TLSClientContext.lastError())")
            }
        } else if SSL_CTX_set_default_verify_paths(c) != 1 {
            SSL_CTX_free(c)
            throw SetupError(description: "cannot load the system CA store: \(TLSClientContext.lastError())")
        }
    }

    deinit { SSL_CTX_free(ctx) }

    /// A client `SSL` on `fd` with SNI and hostname (or IP) verification set.
    func makeSSL(fd: Int32, host: String) -> OpaquePointer? {
        guard let ssl = SSL_new(ctx) else { return nil }
        guard SSL_set_fd(ssl, fd) == 1 else { SSL_free(ssl); return nil }
        if SocketAddress.numeric(host: host, port: 0) != nil {
            _ = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host)
        } else {
            _ = pc_SSL_set_tlsext_host_name(ssl, host)
            _ = SSL_set1_host(ssl, host)
        }
        SSL_set_connect_state(ssl)
        return ssl
    }

    static func lastError() -> String {
        let e = ERR_get_error()
        if e == 0 { return "unknown error" }
        var buf = [CChar](repeating: 0, count: 256)
        ERR_error_string_n(e, &buf, buf.count)
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
