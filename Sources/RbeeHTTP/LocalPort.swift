#if canImport(Glibc)
import Glibc
#endif

/// Ports on this machine: whether one can be bound now, or any the system hands out.
public enum LocalPort {
    /// Whether a listener could bind `port` on `host` now (an IPv4 address; any other host is
    /// probed on every interface). Like the servers, the probe sets SO_REUSEADDR, so a port in
    /// TIME_WAIT counts as free.
    public static func isFree(_ port: Int, host: String = "127.0.0.1") -> Bool {
        bind(port: port, host: host) != nil
    }

    /// A port the system picks as free now, or nil.
    public static func any(host: String = "127.0.0.1") -> Int? {
        bind(port: 0, host: host)
    }

    /// Binds a socket to `port` and closes it again; the port it got, or nil.
    private static func bind(port: Int, host: String) -> Int? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var yes: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        let parsed = inet_addr(host)
        address.sin_addr.s_addr = parsed == INADDR_NONE ? INADDR_ANY : parsed
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else { return nil }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
