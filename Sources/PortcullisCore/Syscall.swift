import CLinux
#if canImport(Glibc)
import Glibc
#endif

/// A failed system call: the call's name and errno. Thrown by setup code (listen, bind);
/// the request path uses `IOResult` instead so that nothing throws per byte.
public struct IOError: Error, CustomStringConvertible, Sendable {
    public let call: String
    public let errno: Int32
    public init(_ call: String, errno: Int32) { self.call = call; self.errno = errno }
    public var description: String { "\(call) failed: \(String(cString: strerror(errno))) (errno \(errno))" }
}

/// The outcome of one non-blocking read or write.
public enum IOResult: Equatable {
    case bytes(Int)       // n > 0 bytes moved
    case wouldBlock       // EAGAIN: wait for the next readiness event
    case eof              // read returned 0
    case error(Int32)     // errno
}

public enum Syscall {
    /// Socket read (recv(2)) retrying EINTR. `recv` rather than `read`: the socket call skips the
    /// VFS layer `read` goes through (file position lock, permission and fsnotify hooks), measurably
    /// cheaper at two reads per proxied request. Sockets only.
    @inline(__always)
    public static func read(_ fd: Int32, _ p: UnsafeMutableRawPointer, _ n: Int) -> IOResult {
        while true {
            let r = Glibc.recv(fd, p, n, 0)
            if r > 0 { return .bytes(r) }
            if r == 0 { return .eof }
            let e = pc_errno()
            if e == EINTR { continue }
            if e == EAGAIN || e == EWOULDBLOCK { return .wouldBlock }
            return .error(e)
        }
    }

    /// Socket write retrying EINTR. Uses send(MSG_NOSIGNAL) so a closed peer never raises SIGPIPE.
    @inline(__always)
    public static func write(_ fd: Int32, _ p: UnsafeRawPointer, _ n: Int) -> IOResult {
        while true {
            let r = Glibc.send(fd, p, n, Int32(MSG_NOSIGNAL))
            if r >= 0 { return .bytes(r) }
            let e = pc_errno()
            if e == EINTR { continue }
            if e == EAGAIN || e == EWOULDBLOCK { return .wouldBlock }
            return .error(e)
        }
    }

    public static func close(_ fd: Int32) { _ = Glibc.close(fd) }

    /// Raises the soft RLIMIT_NOFILE to the hard limit: every proxied stream holds two fds.
    public static func raiseFileLimit() {
        var r = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &r) == 0, r.rlim_cur < r.rlim_max else { return }
        r.rlim_cur = r.rlim_max
        _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &r)
    }

    public static func setNonBlocking(_ fd: Int32) {
        let flags = fcntl(fd, F_GETFL, 0)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
    }

    public static func setIntOption(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32) {
        var v = value
        _ = setsockopt(fd, level, name, &v, socklen_t(MemoryLayout<Int32>.size))
    }

    public static func setNoDelay(_ fd: Int32) {
        setIntOption(fd, Int32(IPPROTO_TCP), TCP_NODELAY, 1)
    }

    /// Sets SO_LINGER 0 so close() sends RST: used to abort an upstream stream at once.
    public static func setLingerZero(_ fd: Int32) {
        var l = linger(l_onoff: 1, l_linger: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, socklen_t(MemoryLayout<linger>.size))
    }

    public static func errorString(_ e: Int32) -> String { String(cString: strerror(e)) }
}
