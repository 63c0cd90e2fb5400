import Foundation
import Hummingbird
import Logging
import NIOCore
import RbeeAPI
import RbeeHTTP
import RbeeInference
import ServiceLifecycle

/// One `llm-worker-rbee`: the HTTP server, the engine, the drain logic and (with a hive URL) the
/// hive reporter, run as one service group. The server starts first, so `/health`, `/v1/ready`
/// and `/v1/loading/progress` answer while the model loads.
public final class WorkerService: Sendable {
    public let configuration: WorkerConfiguration
    public let engine: Engine
    public let metrics = WorkerMetrics()
    public let shutdownSwitch = ShutdownSwitch()
    private let logger: Logger
    private let portBroadcast = ProgressBroadcast<Int>(isTerminal: { _ in true })

    public init(configuration: WorkerConfiguration, logger: Logger) {
        self.configuration = configuration
        var logger = logger
        logger[metadataKey: "worker_id"] = .string(configuration.workerID)
        self.logger = logger
        var engineConfiguration = configuration.engine
        engineConfiguration.keepAliveInterval = configuration.keepAliveInterval
        self.engine = Engine(configuration: engineConfiguration, logger: logger)
    }

    /// The port the server listens on, once it does.
    public func port() async -> Int {
        for await port in portBroadcast.subscribe() { return port }
        return configuration.port
    }

    public var url: String {
        configuration.advertisedURL ?? "http://\(configuration.host):\(portBroadcast.latest ?? configuration.port)"
    }

    /// The worker's routes with their middleware (correlation ids, errors, bearer auth).
    public func makeRouter() -> Router<RbeeRequestContext> {
        let router = Router.rbee(token: configuration.token, metrics: metrics.registry)
        WorkerRoutes(configuration: configuration, engine: engine, metrics: metrics, shutdown: shutdownSwitch).register(on: router)
        return router
    }

    /// Runs until SIGTERM/SIGINT (when `handleSignals`), `POST /v1/shutdown` or a lost hive; then
    /// drains and returns.
    public func run(handleSignals: Bool = true) async throws {
        let app = try DaemonServer.application(
            router: makeRouter(), host: configuration.host, port: configuration.port, token: configuration.token,
            serverName: "llm-worker-rbee", logger: logger
        ) { [portBroadcast] port in portBroadcast.publish(port) }

        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: EngineService(engine: engine, loadOnStart: configuration.loadOnStart))
        ]
        if let hiveURL = configuration.hiveURL {
            let reporter = HiveReporter(
                hiveURL: hiveURL, configuration: configuration, engine: engine, shutdown: shutdownSwitch,
                advertisedURL: { [self] in
                    let port = await port()
                    return configuration.advertisedURL ?? "http://\(configuration.host):\(port)"
                }, logger: logger)
            // Its return (hive lost) only asks for a drain; the drain service ends the group.
            services.append(.init(service: reporter, successTerminationBehavior: .ignore))
        }
        services.append(.init(service: app))
        services.append(
            .init(
                service: DrainService(engine: engine, shutdown: shutdownSwitch, grace: configuration.drainGrace, logger: logger),
                successTerminationBehavior: .gracefullyShutdownGroup))
        let group = ServiceGroup(
            configuration: .init(
                services: services, gracefulShutdownSignals: handleSignals ? [.sigterm, .sigint] : [], logger: logger))
        try await group.run()
        logger.info("worker stopped")
    }
}
