import ArgumentParser
import CRbeeSystem
import Foundation
import Logging
import RbeeAPI
import RbeeHTTP
import RbeeInference
import RbeeWorker

#if canImport(Glibc)
import Glibc
#endif

/// `llm-worker-rbee`: serves one GGUF model over HTTP with llama.cpp.
@main
struct WorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "llm-worker-rbee",
        abstract: "Serve one GGUF model: streamed inference over SSE with continuous batching.",
        discussion: """
            Timers also read RBEE_WORKER_* environment variables (flags win).
            Example:
              llm-worker-rbee --model ~/.cache/rbee/models/gemma-3-270m-q4_k_m.gguf --port 7900
            """)

    @Option(help: "Path of the GGUF model file.") var model: String
    @Option(help: "Port to listen on (0 picks a free one).") var port: Int = 7900
    @Option(help: "Address to listen on; non-loopback addresses need an API token.") var host = "127.0.0.1"
    @Option(help: "Slots decoded together (continuous batching).") var parallel: Int = 4
    @Option(name: .customLong("ctx-size"), help: "Context length of each slot, in tokens.") var ctxSize: Int = 4096
    @Option(help: "CPU threads for llama.cpp (default: all cores).") var threads: Int?
    @Option(name: .customLong("batch-size"), help: "Most tokens per llama_decode call (prompt chunk size).") var batchSize: Int = 512
    @Option(name: .customLong("max-queue"), help: "Requests waiting for a slot before 503 ALL_SLOTS_BUSY.") var maxQueue: Int = 64
    @Option(name: .customLong("gpu-layers"), help: "Layers to offload to a GPU when llama.cpp was built with one.") var gpuLayers: Int = 0
    @Flag(help: "Repack weights for llama.cpp's CPU gemm kernels: faster prompts, but seeded output then varies with load.")
    var repack = false
    @Option(name: .customLong("chat-template-file"), help: "A Jinja chat template that replaces the model's own.") var chatTemplateFile: String?
    @Option(name: .customLong("cache-ram-mib"), help: "Host RAM for slot states kept for prompt reuse (0: off).") var cacheRAMMiB: Int = 2048
    @Option(name: .customLong("worker-id"), help: "This worker's id (default: generated).") var workerID: String?
    @Option(name: .customLong("hive-url"), help: "Hive to report readiness and heartbeats to.") var hiveURL: String?
    @Option(name: .customLong("advertise-url"), help: "URL the hive should give out for this worker.") var advertiseURL: String?
    @Option(name: .customLong("token-file"), help: "File (mode 0600) holding the API token; RBEE_API_TOKEN wins.") var tokenFile: String?
    @Option(name: .customLong("keep-alive-secs"), help: "SSE keep-alive interval [RBEE_WORKER_KEEPALIVE_SECS, 10].") var keepAliveSecs: Double?
    @Option(name: .customLong("heartbeat-secs"), help: "Heartbeat interval to the hive [RBEE_WORKER_HEARTBEAT_SECS, 15].") var heartbeatSecs: Double?
    @Option(name: .customLong("drain-grace-secs"), help: "Grace for in-flight work on shutdown [RBEE_WORKER_DRAIN_GRACE_SECS, 30].") var drainGraceSecs: Double?
    @Option(name: .customLong("loading-timeout-secs"), help: "Model loading timeout [RBEE_WORKER_LOADING_TIMEOUT_SECS, 600].") var loadingTimeoutSecs: Double?
    @Option(name: .customLong("log-format"), help: "text or json.") var logFormat: RbeeLogging.Format = .text
    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error.") var logLevel: Logger.Level = .info

    func validate() throws {
        _ = try configuration()
    }

    /// Flags and `RBEE_WORKER_…` variables, every number range-checked (a usage error names the option).
    func configuration(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> WorkerConfiguration {
        var settings = DaemonSettings(environment: environment)
        var engine = EngineConfiguration(modelPath: (model as NSString).expandingTildeInPath)
        engine.parallel = settings.integer(parallel, option: "--parallel", variable: nil, range: 1...64) ?? parallel
        engine.contextSize = settings.integer(ctxSize, option: "--ctx-size", variable: nil, range: 16...1_048_576) ?? ctxSize
        engine.batchSize = settings.integer(batchSize, option: "--batch-size", variable: nil, range: 1...65536) ?? batchSize
        engine.maxQueue = settings.integer(maxQueue, option: "--max-queue", variable: nil, range: 0...1_000_000) ?? maxQueue
        engine.gpuLayers = settings.integer(gpuLayers, option: "--gpu-layers", variable: nil, range: 0...100_000) ?? gpuLayers
        engine.repackWeights = repack
        engine.cacheRAMBytes = (settings.integer(cacheRAMMiB, option: "--cache-ram-mib", variable: nil, range: 0...1_048_576) ?? cacheRAMMiB) << 20
        engine.chatTemplateFile = chatTemplateFile.map { ($0 as NSString).expandingTildeInPath }
        if let threads = settings.integer(threads, option: "--threads", variable: nil, range: 1...1024) { engine.threads = threads }
        if let value = settings.seconds(loadingTimeoutSecs, option: "--loading-timeout-secs", variable: "RBEE_WORKER_LOADING_TIMEOUT_SECS") {
            engine.loadingTimeout = value
        }
        if let workerID, !Validation.isValidID(workerID) { throw ValidationError("--worker-id must match [A-Za-z0-9._-]{1,64}") }
        var configuration = WorkerConfiguration(engine: engine, workerID: workerID)
        configuration.host = host
        configuration.port = settings.port(port)
        configuration.hiveURL = hiveURL
        configuration.advertisedURL = advertiseURL
        if let value = settings.seconds(keepAliveSecs, option: "--keep-alive-secs", variable: "RBEE_WORKER_KEEPALIVE_SECS") {
            configuration.keepAliveInterval = value
        }
        if let value = settings.seconds(heartbeatSecs, option: "--heartbeat-secs", variable: "RBEE_WORKER_HEARTBEAT_SECS") {
            configuration.heartbeatInterval = value
        }
        if let value = settings.seconds(drainGraceSecs, option: "--drain-grace-secs", variable: "RBEE_WORKER_DRAIN_GRACE_SECS", range: 0...3600) {
            configuration.drainGrace = value
        }
        do { try settings.check() } catch { throw ValidationError(error.description) }
        return configuration
    }

    func run() async throws {
        RbeeLogging.bootstrap(format: logFormat, level: logLevel)
        signal(SIGPIPE, SIG_IGN)
        let logger = Logger(label: "llm-worker-rbee")
        var configuration = try configuration()
        do {
            configuration.token = try APIToken.load(tokenFile: tokenFile)
            APIToken.logPolicy(configuration.token, host: configuration.host, logger: logger)
            // A worker spawned by a hive must not outlive it.
            if hiveURL != nil { _ = rbee_set_parent_death_signal(SIGTERM) }
            try await WorkerService(configuration: configuration, logger: logger).run()
        } catch {
            if DaemonServer.isAddressInUse(error) {
                logger.error("port taken", metadata: ["port": "\(configuration.port)", "error": "\(error)"])
                throw ExitCode(DaemonServer.portTakenExitCode)
            }
            logger.critical("worker failed", metadata: ["error": "\(error)"])
            throw ExitCode.failure
        }
    }
}

extension RbeeLogging.Format: ExpressibleByArgument {}
extension Logger.Level: @retroactive ExpressibleByArgument {}
