import COpenSSL
import PortcullisCore
#if canImport(Glibc)
import Glibc
#endif

/// Bytes in and out of one upstream socket, plain or TLS. Owned by its `UpstreamConnection`
/// (which owns and closes the fd); loop thread only.
enum Transport {
    case plain(fd: Int32)
    case tls(fd: Int32, ssl: OpaquePointer)

    enum HandshakeResult { case done, wantIO, failed(String) }

    func handshake() -> HandshakeResult {
        guard case .tls(_, let ssl) = self else { return .done }
        ERR_clear_error()
        let r = SSL_do_handshake(ssl)
        if r == 1 { return .done }
        let e = SSL_get_error(ssl, r)
        if e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE { return .wantIO }
        let verify = SSL_get_verify_result(ssl)
        if verify != X509_V_OK {
            return .failed("TLS certificate verification failed: \(String(cString: X509_verify_cert_error_string(verify)))")
        }
        return .failed("TLS handshake failed: \(TLSClientContext.lastError())")
    }

    @inline(__always)
    func read(_ p: UnsafeMutableRawPointer, _ n: Int) -> IOResult {
        switch self {
        case .plain(let fd): return Syscall.read(fd, p, n)
        case .tls(_, let ssl):
            ERR_clear_error()
            var got = 0
            if SSL_read_ex(ssl, p, n, &got) == 1 { return .bytes(got) }
            return classify(ssl, SSL_get_error(ssl, 0))
        }
    }

    @inline(__always)
    func write(_ p: UnsafeRawPointer, _ n: Int) -> IOResult {
        switch self {
        case .plain(let fd): return Syscall.write(fd, p, n)
        case .tls(_, let ssl):
            ERR_clear_error()
            var put = 0
            if SSL_write_ex(ssl, p, n, &put) == 1 { return .bytes(put) }
            return classify(ssl, SSL_get_error(ssl, 0))
        }
    }

    private func classify(_ ssl: OpaquePointer, _ e: Int32) -> IOResult {
        switch e {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE: return .wouldBlock
        case SSL_ERROR_ZERO_RETURN: return .eof
        case SSL_ERROR_SYSCALL:
            let en = errno
            return en == 0 ? .eof : .error(en)
        default: return .error(EPROTO)
        }
    }

    var fd: Int32 {
        switch self { case .plain(let fd), .tls(let fd, _): fd }
    }

    /// Frees TLS state (the fd is closed by the connection).
    func free() {
        if case .tls(_, let ssl) = self { SSL_free(ssl) }
    }
}
