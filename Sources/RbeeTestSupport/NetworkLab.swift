import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Hosts of a small network on this machine: one network namespace per host, joined by veth
/// pairs to a bridge (in a namespace of its own), each host with an address in 198.18.0.0/15
/// (reserved for network tests), and this process on the bridge too, so tests reach every host.
/// Programs run inside a host with `run`; links go down and up with `setLink`. `remove` deletes
/// everything it made; a lab left behind by a test process that died is removed by the next.
public final class NetworkLab: Sendable {
    /// Why labs cannot be made here (not root, no `ip`, namespaces refused), or nil.
    public static let unavailableReason: String? = {
        guard getuid() == 0 else { return "network namespaces need root" }
        guard FileManager.default.isExecutableFile(atPath: ip) else { return "network namespaces need `ip` (Debian iproute2)" }
        let probe = "rbtprobe\(getpid())"
        guard (try? command(["netns", "add", probe])) != nil else { return "`ip netns add` is refused here" }
        _ = try? command(["netns", "del", probe])
        return nil
    }()

    /// Why links cannot be slowed here (`tc netem` needs the kernel's sch_netem), or nil.
    public static let delayUnavailableReason: String? = {
        if let reason = unavailableReason { return reason }
        let probe = "rbtprobe\(getpid())d"
        guard (try? command(["netns", "add", probe])) != nil else { return "`ip netns add` is refused here" }
        defer { _ = try? command(["netns", "del", probe]) }
        do {
            try command(["netns", "exec", probe, "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"])
            return nil
        } catch {
            return "`tc netem` is not available in this kernel (\(error))"
        }
    }()

    static let ip = "/usr/sbin/ip"
    static let namePrefix = "rbt"

    /// Namespace and interface names start with this (interface names have 15 characters at most).
    public let prefix: String
    public let hosts: [String]
    /// The third octet of this lab's /24.
    private let subnet: Int

    /// Makes a namespace for each host (names of at most 4 characters).
    public init(hosts: [String]) throws {
        Self.removeAbandoned()
        let id = Int(getpid())
        prefix = "\(Self.namePrefix)\(id)x"
        self.hosts = hosts
        subnet = id % 250
        do {
            try Self.command(["netns", "add", switchNamespace])
            try inSwitch(["link", "add", "br0", "type", "bridge"])
            try inSwitch(["link", "set", "br0", "up"])
            for (index, host) in hosts.enumerated() {
                let namespace = self.namespace(host)
                let (inner, outer) = ("\(prefix)\(index)a", "\(prefix)\(index)b")
                try Self.command(["netns", "add", namespace])
                try Self.command(["link", "add", inner, "type", "veth", "peer", "name", outer])
                try Self.command(["link", "set", inner, "netns", namespace])
                try Self.command(["link", "set", outer, "netns", switchNamespace])
                try inSwitch(["link", "set", outer, "master", "br0", "up"])
                try Self.command(["-n", namespace, "link", "set", inner, "name", "eth0"])
                try Self.command(["-n", namespace, "addr", "add", address(of: host) + "/24", "dev", "eth0"])
                try Self.command(["-n", namespace, "link", "set", "eth0", "up"])
                try Self.command(["-n", namespace, "link", "set", "lo", "up"])
            }
            try Self.command(["link", "add", hostInterface, "type", "veth", "peer", "name", "\(prefix)tb"])
            try Self.command(["link", "set", "\(prefix)tb", "netns", switchNamespace])
            try inSwitch(["link", "set", "\(prefix)tb", "master", "br0", "up"])
            try Self.command(["addr", "add", "198.18.\(subnet).254/24", "dev", hostInterface])
            try Self.command(["link", "set", hostInterface, "up"])
        } catch {
            remove()
            throw error
        }
    }

    public func namespace(_ host: String) -> String { prefix + host }

    /// The host's address.
    public func address(of host: String) -> String { "198.18.\(subnet).\((hosts.firstIndex(of: host) ?? 0) + 1)" }

    private var switchNamespace: String { prefix + "sw" }
    private var hostInterface: String { prefix + "ta" }

    /// Starts a program inside the host (`ip netns exec` replaces itself with it: the pid is the program's).
    public func run(_ host: String, _ executable: String, _ arguments: [String], url: String, log: String, environment: [String: String] = [:]) throws
        -> Daemon
    {
        try Daemon(Self.ip, ["netns", "exec", namespace(host), executable] + arguments, url: url, log: log, environment: environment)
    }

    /// Output of a command run inside the host.
    public func execute(_ host: String, _ arguments: [String]) throws -> String {
        try Self.command(["netns", "exec", namespace(host)] + arguments)
    }

    /// Delays every packet the host sends by `milliseconds` (`tc netem`).
    public func delay(_ host: String, milliseconds: Int) throws {
        try execute(host, ["tc", "qdisc", "replace", "dev", "eth0", "root", "netem", "delay", "\(milliseconds)ms"])
    }

    /// Cuts or restores the host's link to the bridge.
    public func setLink(_ host: String, up: Bool) throws {
        try Self.command(["-n", namespace(host), "link", "set", "eth0", up ? "up" : "down"])
    }

    /// Deletes this process's interface on the bridge and every namespace of the lab.
    public func remove() {
        _ = try? Self.command(["link", "del", hostInterface])
        for host in hosts { _ = try? Self.command(["netns", "del", namespace(host)]) }
        _ = try? Self.command(["netns", "del", switchNamespace])
    }

    /// Namespaces of this lab that still exist (none after `remove`).
    public func leftovers() -> [String] {
        Self.namespaces().filter { $0.hasPrefix(prefix) } + ((try? Self.command(["link", "show", hostInterface])) != nil ? [hostInterface] : [])
    }

    private func inSwitch(_ arguments: [String]) throws { try Self.command(["-n", switchNamespace] + arguments) }

    static func namespaces() -> [String] {
        ((try? command(["netns", "list"])) ?? "").split(separator: "\n").compactMap { $0.split(separator: " ").first.map(String.init) }
    }

    /// Labs whose test process is gone (it crashed before removing them).
    static func removeAbandoned() {
        for name in namespaces() where name.hasPrefix(namePrefix) {
            let digits = name.dropFirst(namePrefix.count).prefix { $0.isNumber }
            guard let pid = Int32(digits), pid != getpid(), kill(pid, 0) != 0 else { continue }
            _ = try? command(["link", "del", "\(namePrefix)\(digits)xta"])
            _ = try? command(["netns", "del", name])
        }
    }

    /// Runs `ip` with the arguments to its end; its output, or an error with what it said.
    @discardableResult
    static func command(_ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: ip)
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        guard process.terminationStatus == 0 else { throw DaemonError("ip \(arguments.joined(separator: " ")): \(text)") }
        return text
    }
}
