import Foundation
import Logging
import RbeeAPI
import RbeeHTTP
import ServiceLifecycle
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The hive on this machine that the queen starts when a request arrives and no hive is
/// registered. Its process runs inside this service's `run`, so it cannot outlive the queen: the
/// queen's drain stops it, and a queen that ends any other way takes it down with the service
/// group (SIGTERM, then SIGKILL). A hive it finds already running is used, and left running.
final class LocalHive: Service, Sendable {
    static let name = "localhost"
    typealias Readiness = ProgressBroadcast<Result<String, RbeeError>>

    private let configuration: QueenConfiguration
    private let registry: HiveRegistry
    private let hives: HiveClient
    private let queenURL: @Sendable () async -> String
    private let logger: Logger
    /// The current start: every `ensure` waits on it; a failed one is replaced by the next call.
    private let attempt = Mutex<Readiness?>(nil)
    private let starts: AsyncStream<Readiness>
    private let startRequests: AsyncStream<Readiness>.Continuation
    private let stopRequest = ShutdownSwitch()
    /// Set while a hive process runs; requested when it has ended.
    private let running = Mutex<ShutdownSwitch?>(nil)

    init(
        configuration: QueenConfiguration, registry: HiveRegistry, hives: HiveClient, queenURL: @escaping @Sendable () async -> String,
        logger: Logger
    ) {
        self.configuration = configuration
        self.registry = registry
        self.hives = hives
        self.queenURL = queenURL
        self.logger = logger
        (starts, startRequests) = AsyncStream.makeStream()
    }

    /// Returns once a local hive is registered (started by this call or an earlier one).
    func ensure() async throws(RbeeError) {
        let readiness = attempt.withLock { current -> Readiness in
            if let current, !Self.failed(current) { return current }
            let next = Readiness(isTerminal: { _ in true })
            current = next
            startRequests.yield(next)
            return next
        }
        for await result in readiness.subscribe() {
            _ = try result.get()
            return
        }
        throw RbeeError(.hiveUnreachable, "the queen is stopping; no local hive was started")
    }

    private static func failed(_ readiness: Readiness) -> Bool {
        if case .failure? = readiness.latest { true } else { false }
    }

    /// Stops the hive if this queen started it (it stops its workers first); returns once it ended.
    func stop() async {
        stopRequest.request()
        if let ended = running.withLock({ $0 }) { await ended.wait() }
    }

    func run() async throws {
        await cancelWhenGracefulShutdown { [self] in
            // Until the group shuts down, even after the drain stopped the hive: a service that
            // returns early would end the group as a failure.
            for await readiness in starts where !stopRequest.isRequested {
                await launch(reporting: readiness)
            }
        }
        // Nobody waits on a start that can no longer happen.
        attempt.withLock { $0 }?.publish(.failure(RbeeError(.hiveUnreachable, "the queen is stopping")))
    }

    /// Starts a hive (or finds one) and, when this queen started it, runs it until it ends.
    private func launch(reporting readiness: Readiness) async {
        var port = configuration.localHivePort
        if port != 0, let health = try? await hives.health(hiveURL: "http://127.0.0.1:\(port)", timeout: .seconds(2)) {
            logger.info("found a hive already running on this machine", metadata: ["port": "\(port)", "version": "\(health.version)"])
            readiness.publish(await register(url: "http://127.0.0.1:\(port)", source: "api"))
            return
        }
        let binary: String
        do throws(RbeeError) {
            if let configured = configuration.hiveBinary { binary = configured } else { binary = try ProgramDirectory.program("rbee-hive") }
        } catch {
            readiness.publish(.failure(RbeeError(.hiveUnreachable, "no hive is registered and none can be started here: \(error.message)", details: error.details)))
            return
        }
        if port == 0 { port = LocalPort.any() ?? 7835 }
        let url = "http://127.0.0.1:\(port)"
        var arguments = [
            "serve", "--port", "\(port)", "--name", Self.name, "--home", configuration.home, "--queen-url", await queenURL(),
            "--heartbeat-secs", "\(Double(configuration.hiveHeartbeatInterval.milliseconds) / 1000)", "--exit-with-parent",
        ]
        for directory in configuration.localHiveModelDirectories { arguments += ["--model-dir", directory] }
        let logFile = configuration.home + "/queen/local-hive.log"
        let process = ChildProcess(
            executable: binary, arguments: arguments, environment: ["RBEE_API_TOKEN": configuration.token?.value], logFile: logFile,
            grace: Self.stopGrace)
        let ended = ShutdownSwitch()
        running.withLock { $0 = ended }
        defer {
            running.withLock { $0 = nil }
            ended.request()
        }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { [logger, stopRequest] in
                do throws(RbeeError) {
                    let termination = try await process.run(stop: stopRequest) { pid in
                        logger.info("started a local hive", metadata: ["pid": "\(pid)", "url": "\(url)", "log": "\(logFile)"])
                    }
                    if termination.forcedKill {
                        logger.warning("local hive ignored SIGTERM and was killed with SIGKILL after the grace period", metadata: ["grace_s": "\(Self.stopGrace.milliseconds / 1000)"])
                    } else {
                        logger.info("local hive exited", metadata: ["status": "\(termination.status)"])
                    }
                    readiness.publish(.failure(RbeeError(.hiveUnreachable, "the local hive exited while starting (\(termination.status)); see \(logFile)")))
                } catch {
                    readiness.publish(.failure(RbeeError(.hiveUnreachable, "the local hive could not start: \(error.message)")))
                }
            }
            // The hive answers once it listens; it registers itself with its first heartbeat, but
            // the request that started it should not wait for that.
            let deadline = ContinuousClock.now + .seconds(30)
            while ContinuousClock.now < deadline, !readiness.isFinished {
                if (try? await hives.health(hiveURL: url, timeout: .seconds(1))) != nil {
                    readiness.publish(await register(url: url, source: "local"))
                    break
                }
                try? await Task.sleep(for: .milliseconds(100))
            }
            if !readiness.isFinished {
                readiness.publish(.failure(RbeeError(.hiveUnreachable, "the local hive did not answer within 30 s; see \(logFile)")))
                stopRequest.request()
            }
            await group.waitForAll()
        }
    }

    /// SIGTERM to the local hive, then SIGKILL this much later (it stops its workers first).
    static let stopGrace: Duration = .seconds(15)

    private func register(url: String, source: String) async -> Result<String, RbeeError> {
        do throws(RbeeError) {
            let workers = try await hives.workers(hiveURL: url)
            let catalog = try await hives.catalog(hiveURL: url)
            let health = try await hives.health(hiveURL: url)
            try await registry.heard(
                name: Self.name, url: url, cpuCores: nil, ramAvailableBytes: nil, workers: workers, catalog: catalog.models,
                models: catalog.models.map(\.id), source: source, hiveID: health.hiveID, catalogVersion: catalog.version)
            return .success(url)
        } catch {
            return .failure(error)
        }
    }
}
