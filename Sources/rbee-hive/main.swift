import ArgumentParser
import CRbeeSystem
import Foundation
import Logging
import RbeeAPI
import RbeeHTTP
import RbeeHive

#if canImport(Glibc)
import Glibc
#endif

/// `rbee-hive`: the per-machine pool manager.
@main
struct HiveCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rbee-hive",
        abstract: "The per-machine pool manager: model catalog, verified downloads, devices, worker supervision.",
        subcommands: [Serve.self, Detect.self],
        defaultSubcommand: Serve.self)

    struct Serve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the hive daemon.",
            discussion: """
                Models and the catalog live under --home (RBEE_HOME, default ~/.rbee).
                HF_ENDPOINT and HF_TOKEN work as in huggingface_hub.
                Example:
                  rbee-hive serve --port 7835
                """)

        @Option(help: "Port to listen on (0 picks a free one).") var port: Int = 7835
        @Option(help: "Address to listen on; non-loopback addresses need an API token.") var host = "127.0.0.1"
        @Option(help: "Home directory (RBEE_HOME, default ~/.rbee).") var home: String?
        @Option(name: .customLong("model-dir"), help: "Further directory file: references may point into (repeatable).")
        var modelDirectories: [String] = []
        @Option(name: .customLong("token-file"), help: "File (mode 0600) holding the API token; RBEE_API_TOKEN wins.") var tokenFile: String?
        @Option(name: .customLong("download-stall-secs"), help: "No data for this long fails a download attempt [RBEE_HIVE_DOWNLOAD_STALL_SECS, 60].")
        var stallSecs: Double?
        @Option(name: .customLong("download-attempts"), help: "Attempts per download, with exponential backoff (1-100).") var attempts: Int = 6
        @Option(help: "This hive's name, reported to the queen (default: the host name).") var name: String?
        @Option(name: .customLong("queen-url"), help: "Queen to register with and send heartbeats to.") var queenURL: String?
        @Option(
            name: .customLong("advertise-url"),
            help: "URL the queen reaches this hive at (default http://<host>:<port>); its host is also the one workers are announced with.")
        var advertiseURL: String?
        @Option(name: .customLong("heartbeat-secs"), help: "Heartbeat interval to the queen [RBEE_HIVE_HEARTBEAT_SECS, 10].")
        var queenHeartbeatSecs: Double?
        @Option(name: .customLong("worker-binary"), help: "llm-worker-rbee to spawn (default: next to this executable, or in RBEE_BIN_DIR).") var workerBinary: String?
        @Option(name: .customLong("worker-heartbeat-secs"), help: "Heartbeat interval asked of workers [RBEE_WORKER_HEARTBEAT_SECS, 15].")
        var heartbeatSecs: Double?
        @Option(name: .customLong("worker-probe-secs"), help: "Health probe of each ready worker; 3 failures stop it [RBEE_HIVE_WORKER_PROBE_SECS, 10].")
        var probeSecs: Double?
        @Option(name: .customLong("worker-idle-secs"), help: "Stop a ready worker idle this long [RBEE_HIVE_WORKER_IDLE_SECS, 300].")
        var idleSecs: Double?
        @Option(name: .customLong("memory-limit-bytes"), help: "Memory this hive may use for workers at most [RBEE_HIVE_MEMORY_LIMIT_BYTES, the machine's available memory].")
        var memoryLimitBytes: Int?
        @Option(name: .customLong("worker-loading-timeout-secs"), help: "Kill a worker still loading after this [RBEE_WORKER_LOADING_TIMEOUT_SECS, 600].")
        var loadingTimeoutSecs: Double?
        @Option(
            name: .customLong("worker-ports"),
            help: "Ports workers listen on, LOW-HIGH, to open in a firewall; 0: ports the system picks [RBEE_HIVE_WORKER_PORTS, 7900-7999].")
        var workerPorts: String?
        @Option(name: .customLong("worker-stop-grace-secs"), help: "SIGKILL a worker this long after SIGTERM [RBEE_HIVE_WORKER_STOP_GRACE_SECS, 10].")
        var stopGraceSecs: Double?
        @Flag(name: .customLong("exit-with-parent"), help: "Stop (with its workers) when the process that started this one ends.")
        var exitWithParent = false
        @Option(name: .customLong("log-format"), help: "text or json.") var logFormat: RbeeLogging.Format = .text
        @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error.") var logLevel: Logger.Level = .info

        func validate() throws {
            _ = try configuration()
        }

        /// Flags and `RBEE_…` variables, every number range-checked (a usage error names the option).
        func configuration(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> HiveConfiguration {
            if let name, !Validation.isHiveName(name) {
                throw ValidationError("--name must be a DNS name: labels of letters, digits and '-', separated by dots, at most 64 characters")
            }
            var settings = DaemonSettings(environment: environment)
            var configuration = HiveConfiguration(home: home ?? HiveConfiguration.defaultHome(environment: environment))
            configuration.host = host
            configuration.port = settings.port(port)
            configuration.extraModelDirectories = modelDirectories
            configuration.downloads.attempts = settings.integer(attempts, option: "--download-attempts", variable: nil, range: 1...100) ?? 6
            if let value = settings.seconds(stallSecs, option: "--download-stall-secs", variable: "RBEE_HIVE_DOWNLOAD_STALL_SECS") {
                configuration.downloads.stallTimeout = value
            }
            if let workerBinary { configuration.supervision.workerBinary = workerBinary }
            configuration.supervision.memoryLimitBytes = settings.integer(
                memoryLimitBytes, option: "--memory-limit-bytes", variable: "RBEE_HIVE_MEMORY_LIMIT_BYTES", range: 0...Int.max)
            if let name { configuration.name = name }
            configuration.queenURL = queenURL
            if let advertiseURL {
                guard let url = URL(string: advertiseURL), ["http", "https"].contains(url.scheme ?? ""), url.host?.isEmpty == false else {
                    throw ValidationError("--advertise-url must be an http:// or https:// URL with a host, got \(advertiseURL)")
                }
                configuration.advertiseURL = advertiseURL.hasSuffix("/") ? String(advertiseURL.dropLast()) : advertiseURL
            }
            if let value = settings.seconds(queenHeartbeatSecs, option: "--heartbeat-secs", variable: "RBEE_HIVE_HEARTBEAT_SECS") {
                configuration.queenHeartbeatInterval = value
            }
            if let value = settings.seconds(heartbeatSecs, option: "--worker-heartbeat-secs", variable: "RBEE_WORKER_HEARTBEAT_SECS") {
                configuration.supervision.heartbeatInterval = value
            }
            if let value = settings.seconds(probeSecs, option: "--worker-probe-secs", variable: "RBEE_HIVE_WORKER_PROBE_SECS") {
                configuration.supervision.healthProbeInterval = value
            }
            if let value = settings.seconds(idleSecs, option: "--worker-idle-secs", variable: "RBEE_HIVE_WORKER_IDLE_SECS") {
                configuration.supervision.idleTimeout = value
            }
            if let value = settings.seconds(loadingTimeoutSecs, option: "--worker-loading-timeout-secs", variable: "RBEE_WORKER_LOADING_TIMEOUT_SECS") {
                configuration.supervision.loadingTimeout = value
            }
            if let value = settings.portRange(workerPorts, option: "--worker-ports", variable: "RBEE_HIVE_WORKER_PORTS") {
                configuration.supervision.workerPorts = value
            }
            if let value = settings.seconds(stopGraceSecs, option: "--worker-stop-grace-secs", variable: "RBEE_HIVE_WORKER_STOP_GRACE_SECS") {
                configuration.supervision.stopGrace = value
            }
            configuration.downloads.hfEndpoint = environment["HF_ENDPOINT"] ?? "https://huggingface.co"
            configuration.downloads.hfToken = environment["HF_TOKEN"]
            do { try settings.check() } catch { throw ValidationError(error.description) }
            return configuration
        }

        func run() async throws {
            RbeeLogging.bootstrap(format: logFormat, level: logLevel)
            signal(SIGPIPE, SIG_IGN)
            if exitWithParent { _ = rbee_set_parent_death_signal(SIGTERM) }
            let logger = Logger(label: "rbee-hive")
            var configuration = try configuration()
            do {
                configuration.token = try APIToken.load(tokenFile: tokenFile)
                APIToken.logPolicy(configuration.token, host: configuration.host, logger: logger)
                try await HiveService(configuration: configuration, logger: logger).run()
            } catch {
                logger.critical("hive failed", metadata: ["error": "\(error)"])
                throw ExitCode.failure
            }
        }
    }

    struct Detect: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print this machine's devices (CPU cores, RAM, GPUs) as JSON.")

        func run() async throws {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(await DeviceInventory.detect()), as: UTF8.self))
        }
    }
}

extension RbeeLogging.Format: ExpressibleByArgument {}
extension Logger.Level: @retroactive ExpressibleByArgument {}
