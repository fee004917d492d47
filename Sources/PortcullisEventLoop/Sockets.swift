import CLinux
import PortcullisCore
#if canImport(Glibc)
import Glibc
#endif

/// Socket set-up calls. The returned fds belong to the caller, who closes them.
public enum Sockets {
    /// A non-blocking listening socket with SO_REUSEADDR and SO_REUSEPORT, so every worker can
    /// bind its own socket to the same address and the kernel balances accepts between them.
    public static func listen(on address: SocketAddress, backlog: Int32 = 1024) throws -> Int32 {
        let fd = socket(address.family, Int32(SOCK_STREAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), 0)
        if fd < 0 { throw IOError("socket", errno: pc_errno()) }
        Syscall.setIntOption(fd, SOL_SOCKET, SO_REUSEADDR, 1)
        Syscall.setIntOption(fd, SOL_SOCKET, SO_REUSEPORT, 1)
        let r = address.withSockAddr { bind(fd, $0, $1) }
        if r != 0 {
            let e = pc_errno(); Syscall.close(fd)
            throw IOError("bind(\(address))", errno: e)
        }
        if Glibc.listen(fd, backlog) != 0 {
            let e = pc_errno(); Syscall.close(fd)
            throw IOError("listen(\(address))", errno: e)
        }
        return fd
    }

    /// The address a socket is bound to (to learn the port after binding port 0).
    public static func localAddress(_ fd: Int32) -> SocketAddress? {
        var st = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let r = withUnsafeMutablePointer(to: &st) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        return r == 0 ? SocketAddress(storage: st, length: len) : nil
    }

    public enum AcceptResult {
        case accepted(Int32, SocketAddress)
        case wouldBlock
        case failed(Int32)
    }

    /// accept4 with NONBLOCK|CLOEXEC.
    public static func accept(_ listenFD: Int32) -> AcceptResult {
        var st = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        while true {
            let fd = withUnsafeMutablePointer(to: &st) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    accept4(listenFD, $0, &len, Int32(SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue))
                }
            }
            if fd >= 0 { return .accepted(fd, SocketAddress(storage: st, length: len)) }
            let e = pc_errno()
            if e == EINTR || e == ECONNABORTED { continue }
            if e == EAGAIN || e == EWOULDBLOCK { return .wouldBlock }
            return .failed(e)
        }
    }

    public enum ConnectResult {
        case connected(Int32)
        case inProgress(Int32)
        case failed(Int32)  // errno
    }

    /// Starts a non-blocking TCP connect; completion is signalled by EPOLLOUT, then `pendingError`.
    public static func connect(to address: SocketAddress) -> ConnectResult {
        let fd = socket(address.family, Int32(SOCK_STREAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), 0)
        if fd < 0 { return .failed(pc_errno()) }
        Syscall.setNoDelay(fd)
        let r = address.withSockAddr { Glibc.connect(fd, $0, $1) }
        if r == 0 { return .connected(fd) }
        let e = pc_errno()
        if e == EINPROGRESS || e == EINTR { return .inProgress(fd) }
        Syscall.close(fd)
        return .failed(e)
    }

    /// SO_ERROR of a socket (0 when a non-blocking connect succeeded).
    public static func pendingError(_ fd: Int32) -> Int32 {
        var err: Int32 = 0
        var len = socklen_t(4)
        if getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 { return pc_errno() }
        return err
    }

    /// A head and a body in one syscall: sendmsg(2) with two iovecs (a socket call, like
    /// `Syscall.write`: no VFS layer, and `MSG_NOSIGNAL` so a closed peer never raises SIGPIPE).
    public static func send2(_ fd: Int32, _ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> IOResult {
        var iov = (iovec(iov_base: UnsafeMutableRawPointer(mutating: a.baseAddress), iov_len: a.count),
                   iovec(iov_base: UnsafeMutableRawPointer(mutating: b.baseAddress), iov_len: b.count))
        while true {
            let r = withUnsafeMutablePointer(to: &iov) {
                $0.withMemoryRebound(to: iovec.self, capacity: 2) { v -> Int in
                    var m = msghdr()
                    m.msg_iov = v
                    m.msg_iovlen = 2
                    return Glibc.sendmsg(fd, &m, Int32(MSG_NOSIGNAL))
                }
            }
            if r >= 0 { return .bytes(r) }
            let e = pc_errno()
            if e == EINTR { continue }
            if e == EAGAIN || e == EWOULDBLOCK { return .wouldBlock }
            return .error(e)
        }
    }
}

/// Starts a detached pthread running `body` (event loop workers, the resolver).
public func spawnThread(name: String, _ body: @escaping @Sendable () -> Void) {
    final class Box: @unchecked Sendable { let body: @Sendable () -> Void; init(_ b: @escaping @Sendable () -> Void) { body = b } }
    let box = Unmanaged.passRetained(Box(body)).toOpaque()
    var tid = pthread_t()
    let rc = pthread_create(&tid, nil, { arg in
        let b = Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue()
        b.body()
        return nil
    }, box)
    precondition(rc == 0, "pthread_create failed: \(rc)")
    pthread_detach(tid)
}
