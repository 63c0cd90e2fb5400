import ArgumentParser
import CRbeeSystem
import Foundation
import Logging
import RbeeAPI
import RbeeHTTP
import RbeeQueen

#if canImport(Glibc)
import Glibc
#endif

/// `queen-rbee`: the orchestrator every client talks to.
@main
struct QueenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "queen-rbee",
        abstract: "The orchestrator: hive registry, scheduling across hives, OpenAI-compatible API, task streams.",
        discussion: """
            The hive registry lives under --home (RBEE_HOME, default ~/.rbee). With no hive registered, the
            first request starts one on this machine (rbee-hive next to this executable).
            Examples:
              queen-rbee --port 7833
              queen-rbee --max-queue 64 --model-dir ~/.cache/rbee/models
            """)

    @Option(help: "Port to listen on (0 picks a free one).") var port: Int = 7833
    @Option(help: "Address to listen on; non-loopback addresses need an API token.") var host = "127.0.0.1"
    @Option(help: "Home directory (RBEE_HOME, default ~/.rbee).") var home: String?
    @Option(name: .customLong("token-file"), help: "File (mode 0600) holding the API token; RBEE_API_TOKEN wins.") var tokenFile: String?
    @Option(name: .customLong("max-queue"), help: "Requests allowed to wait; more get 429 [RBEE_QUEEN_MAX_QUEUE, 256].") var maxQueue: Int?
    @Option(name: .customLong("worker-queue"), help: "Requests stacked on a worker beyond its slots before another worker is started.")
    var workerQueue: Int?
    @Option(name: .customLong("worker-parallel"), help: "Slots asked of the workers this queen starts (default: the worker's).")
    var workerParallel: Int?
    @Option(name: .customLong("hive-heartbeat-secs"), help: "Heartbeat interval of hives; silent for 3 is unreachable [RBEE_HIVE_HEARTBEAT_SECS, 10].")
    var hiveHeartbeatSecs: Double?
    @Option(name: .customLong("keep-alive-secs"), help: "SSE keep-alive interval [RBEE_KEEPALIVE_SECS, 10].") var keepAliveSecs: Double?
    @Option(name: .customLong("stall-secs"), help: "An upstream silent this long (3 of its keep-alive intervals) is stalled [RBEE_QUEEN_STALL_SECS, 30].")
    var stallSecs: Double?
    @Option(name: .customLong("drain-grace-secs"), help: "On shutdown, time in-flight tasks get to finish [RBEE_QUEEN_DRAIN_GRACE_SECS, 30].")
    var drainGraceSecs: Double?
    @Flag(name: .customLong("no-local-hive"), help: "Never start a hive on this machine.") var noLocalHive = false
    @Option(name: .customLong("hive-binary"), help: "rbee-hive for the local hive (default: next to this executable, or in RBEE_BIN_DIR).") var hiveBinary: String?
    @Option(name: .customLong("local-hive-port"), help: "Port of the local hive (0 picks a free one).") var localHivePort: Int = 7835
    @Option(name: .customLong("model-dir"), help: "Directory the local hive may import file: models from (repeatable).")
    var modelDirectories: [String] = []
    @Option(name: .customLong("cors-origin"), help: "An origin browsers may call the queen from, e.g. http://localhost:3000 (repeatable; default: none).")
    var corsOrigins: [String] = []
    @Option(name: .customLong("default-model"), help: "The model of OpenAI requests without one (default: the only model known, if just one is).")
    var defaultModel: String?
    @Flag(name: .customLong("exit-with-parent"), help: "Stop when the process that started this one ends (used by rbee).")
    var exitWithParent = false
    @Option(name: .customLong("log-format"), help: "text or json.") var logFormat: RbeeLogging.Format = .text
    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error.") var logLevel: Logger.Level = .info

    func validate() throws {
        _ = try configuration()
    }

    /// Flags and `RBEE_…` variables, every number range-checked (a usage error names the option).
    func configuration(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> QueenConfiguration {
        var settings = DaemonSettings(environment: environment)
        var configuration = QueenConfiguration(home: home ?? QueenConfiguration.defaultHome(environment: environment))
        configuration.host = host
        configuration.port = settings.port(port)
        configuration.localHivePort = settings.port(localHivePort, option: "--local-hive-port")
        configuration.corsOrigins = corsOrigins
        configuration.defaultModel = defaultModel
        if let value = settings.integer(maxQueue, option: "--max-queue", variable: "RBEE_QUEEN_MAX_QUEUE", range: 0...1_000_000) {
            configuration.maxQueue = value
        }
        configuration.workerQueueDepth = settings.integer(workerQueue, option: "--worker-queue", variable: nil, range: 0...10_000) ?? 4
        configuration.workerParallel = settings.integer(workerParallel, option: "--worker-parallel", variable: nil, range: 1...64)
        if let value = settings.seconds(hiveHeartbeatSecs, option: "--hive-heartbeat-secs", variable: "RBEE_HIVE_HEARTBEAT_SECS") {
            configuration.hiveHeartbeatInterval = value
        }
        if let value = settings.seconds(keepAliveSecs, option: "--keep-alive-secs", variable: "RBEE_KEEPALIVE_SECS") {
            configuration.keepAliveInterval = value
        }
        if let value = settings.seconds(stallSecs, option: "--stall-secs", variable: "RBEE_QUEEN_STALL_SECS") { configuration.stallTimeout = value }
        if let value = settings.seconds(drainGraceSecs, option: "--drain-grace-secs", variable: "RBEE_QUEEN_DRAIN_GRACE_SECS", range: 0...3600) {
            configuration.drainGrace = value
        }
        configuration.startLocalHive = !noLocalHive
        configuration.hiveBinary = hiveBinary
        configuration.localHiveModelDirectories = modelDirectories
        do { try settings.check() } catch { throw ValidationError(error.description) }
        return configuration
    }

    func run() async throws {
        RbeeLogging.bootstrap(format: logFormat, level: logLevel)
        signal(SIGPIPE, SIG_IGN)
        // Started by `rbee infer`: end with it. Started by `rbee queen start`: outlive the terminal.
        if exitWithParent { _ = rbee_set_parent_death_signal(SIGTERM) } else { signal(SIGHUP, SIG_IGN) }
        let logger = Logger(label: "queen-rbee")
        var configuration = try configuration()
        do {
            configuration.token = try APIToken.load(tokenFile: tokenFile)
            APIToken.logPolicy(configuration.token, host: configuration.host, logger: logger)
            try await QueenService(configuration: configuration, logger: logger).run()
        } catch {
            logger.critical("queen failed", metadata: ["error": "\(error)"])
            throw ExitCode.failure
        }
    }
}

extension RbeeLogging.Format: ExpressibleByArgument {}
extension Logger.Level: @retroactive ExpressibleByArgument {}
