import Foundation
import Logging
import RbeeAPI
import RbeeHTTP

#if canImport(Glibc)
import Glibc
#endif

/// The hive on this machine that the queen starts on demand when no hive is registered, and
/// stops when it stops (a hive it finds already running is used, and left running).
actor LocalHive {
    static let name = "localhost"

    private let configuration: QueenConfiguration
    private let registry: HiveRegistry
    private let hives: HiveClient
    private let queenURL: @Sendable () async -> String
    private let logger: Logger
    private var process: ProcessBox?
    private var starting: Task<Void, any Error>?

    init(
        configuration: QueenConfiguration, registry: HiveRegistry, hives: HiveClient, queenURL: @escaping @Sendable () async -> String,
        logger: Logger
    ) {
        self.configuration = configuration
        self.registry = registry
        self.hives = hives
        self.queenURL = queenURL
        self.logger = logger
    }

    /// Returns once a local hive is registered (started by this call or an earlier one).
    func ensure() async throws {
        if let starting {
            try await starting.value
            return
        }
        let task = Task { try await launch() }
        starting = task
        do {
            try await task.value
        } catch {
            starting = nil
            throw error
        }
    }

    private func launch() async throws {
        var port = configuration.localHivePort
        if port != 0, let health = try? await hives.health(hiveURL: "http://127.0.0.1:\(port)", timeout: .seconds(2)) {
            logger.info("found a hive already running on this machine", metadata: ["port": "\(port)", "version": "\(health.version)"])
            try await register(url: "http://127.0.0.1:\(port)", source: "api")
            return
        }
        if port == 0 { port = Self.freePort() ?? 7835 }
        let binary =
            configuration.hiveBinary
            ?? URL(fileURLWithPath: CommandLine.arguments.first ?? "").deletingLastPathComponent().appendingPathComponent("rbee-hive").path
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw RbeeError(.hiveUnreachable, "no hive is registered and \(binary) cannot be started", details: ["hive_binary": .string(binary)])
        }
        let url = "http://127.0.0.1:\(port)"
        var arguments = [
            "serve", "--port", "\(port)", "--name", Self.name, "--home", configuration.home, "--queen-url", await queenURL(),
            "--heartbeat-secs", "\(Double(configuration.hiveHeartbeatInterval.milliseconds) / 1000)", "--exit-with-parent",
        ]
        for directory in configuration.localHiveModelDirectories { arguments += ["--model-dir", directory] }
        var environment = ProcessInfo.processInfo.environment
        if let token = configuration.token { environment["RBEE_API_TOKEN"] = token.value }
        let logFile = configuration.home + "/queen/local-hive.log"
        let box = ProcessBox()
        try box.start(executable: binary, arguments: arguments, environment: environment, logFile: logFile) { [logger] status in
            logger.warning("local hive exited", metadata: ["status": "\(status)"])
        }
        process = box
        logger.info("started a local hive", metadata: ["pid": "\(box.pid)", "url": "\(url)", "log": "\(logFile)"])
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            if box.hasEnded {
                throw RbeeError(.hiveUnreachable, "the local hive exited while starting; see \(logFile)", details: ["log": .string(logFile)])
            }
            if (try? await hives.health(hiveURL: url, timeout: .seconds(1))) != nil {
                try await register(url: url, source: "local")
                return
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        await box.stop(grace: .seconds(5), logger: logger)
        throw RbeeError(.hiveUnreachable, "the local hive did not answer within 30 s; see \(logFile)")
    }

    private func register(url: String, source: String) async throws {
        let workers = try await hives.workers(hiveURL: url)
        let catalog = try await hives.models(hiveURL: url)
        try await registry.heard(
            name: Self.name, url: url, cpuCores: nil, ramAvailableBytes: nil, workers: workers, catalog: catalog, models: catalog.map(\.id),
            source: source)
    }

    /// Stops the hive if this queen started it (it stops its workers first).
    func stop() async {
        guard let process else { return }
        self.process = nil
        starting = nil
        logger.info("stopping the local hive", metadata: ["pid": "\(process.pid)"])
        await process.stop(grace: .seconds(15), logger: logger)
    }

    static func freePort() -> Int? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else { return nil }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
