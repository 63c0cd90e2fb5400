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
        @Option(name: .customLong("download-attempts"), help: "Attempts per download, with exponential backoff.") var attempts: Int = 6
        @Option(help: "This hive's name, reported to the queen (default: the host name).") var name: String?
        @Option(name: .customLong("queen-url"), help: "Queen to register with and send heartbeats to.") var queenURL: String?
        @Option(name: .customLong("heartbeat-secs"), help: "Heartbeat interval to the queen [RBEE_HIVE_HEARTBEAT_SECS, 10].")
        var queenHeartbeatSecs: Double?
        @Option(name: .customLong("worker-binary"), help: "llm-worker-rbee to spawn (default: next to this executable, or in RBEE_BIN_DIR).") var workerBinary: String?
        @Option(name: .customLong("worker-heartbeat-secs"), help: "Heartbeat interval asked of workers [RBEE_WORKER_HEARTBEAT_SECS, 15].")
        var heartbeatSecs: Double?
        @Option(name: .customLong("worker-idle-secs"), help: "Stop a ready worker idle this long [RBEE_HIVE_WORKER_IDLE_SECS, 300].")
        var idleSecs: Double?
        @Option(name: .customLong("memory-limit-bytes"), help: "Memory this hive may use for workers at most [RBEE_HIVE_MEMORY_LIMIT_BYTES, the machine's available memory].")
        var memoryLimitBytes: Int?
        @Option(name: .customLong("worker-loading-timeout-secs"), help: "Kill a worker still loading after this [RBEE_WORKER_LOADING_TIMEOUT_SECS, 600].")
        var loadingTimeoutSecs: Double?
        @Flag(name: .customLong("exit-with-parent"), help: "Stop (with its workers) when the process that started this one ends.")
        var exitWithParent = false
        @Option(name: .customLong("log-format"), help: "text or json.") var logFormat: RbeeLogging.Format = .text
        @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error.") var logLevel: Logger.Level = .info

        func validate() throws {
            if let name, !(1...63).contains(name.count) || !name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }) {
                throw ValidationError("--name must be 1-63 letters, digits or '-' (DNS-safe)")
            }
        }

        func run() async throws {
            RbeeLogging.bootstrap(format: logFormat, level: logLevel)
            signal(SIGPIPE, SIG_IGN)
            if exitWithParent { _ = rbee_set_parent_death_signal(SIGTERM) }
            let logger = Logger(label: "rbee-hive")
            let environment = ProcessInfo.processInfo.environment
            var configuration = HiveConfiguration(home: home ?? HiveConfiguration.defaultHome())
            configuration.host = host
            configuration.port = port
            configuration.extraModelDirectories = modelDirectories
            configuration.downloads.attempts = max(1, attempts)
            if let stall = stallSecs ?? environment["RBEE_HIVE_DOWNLOAD_STALL_SECS"].flatMap(Double.init) {
                configuration.downloads.stallTimeout = .milliseconds(Int64(stall * 1000))
            }
            func seconds(_ flag: Double?, _ variable: String) -> Duration? {
                (flag ?? environment[variable].flatMap(Double.init)).map { .milliseconds(Int64($0 * 1000)) }
            }
            if let workerBinary { configuration.supervision.workerBinary = workerBinary }
            configuration.supervision.memoryLimitBytes = memoryLimitBytes ?? environment["RBEE_HIVE_MEMORY_LIMIT_BYTES"].flatMap(Int.init)
            if let name { configuration.name = name }
            configuration.queenURL = queenURL
            if let value = seconds(queenHeartbeatSecs, "RBEE_HIVE_HEARTBEAT_SECS") { configuration.queenHeartbeatInterval = value }
            if let value = seconds(heartbeatSecs, "RBEE_WORKER_HEARTBEAT_SECS") { configuration.supervision.heartbeatInterval = value }
            if let value = seconds(idleSecs, "RBEE_HIVE_WORKER_IDLE_SECS") { configuration.supervision.idleTimeout = value }
            if let value = seconds(loadingTimeoutSecs, "RBEE_WORKER_LOADING_TIMEOUT_SECS") { configuration.supervision.loadingTimeout = value }
            configuration.downloads.hfEndpoint = environment["HF_ENDPOINT"] ?? "https://huggingface.co"
            configuration.downloads.hfToken = environment["HF_TOKEN"]
            do {
                configuration.token = try APIToken.load(tokenFile: tokenFile)
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
