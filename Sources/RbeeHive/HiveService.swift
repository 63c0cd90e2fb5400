import Foundation
import Hummingbird
import Logging
import RbeeAPI
import RbeeHTTP
import ServiceLifecycle

/// One `rbee-hive`: the HTTP server and the model catalog and downloads, run as one service
/// group until SIGTERM/SIGINT (with `handleSignals`) or `POST /v1/shutdown`.
public final class HiveService: Sendable {
    public let configuration: HiveConfiguration
    public let provisioner: ModelProvisioner
    public let metrics: HiveMetrics
    public let supervisor: WorkerSupervisor
    public let shutdownSwitch = ShutdownSwitch()
    /// This hive's identity, kept in its home (`HiveIdentity`).
    public let hiveID: String
    let background = BackgroundTasks()
    private let logger: Logger
    private let portBroadcast = ProgressBroadcast<Int>(isTerminal: { _ in true })

    public init(configuration: HiveConfiguration, logger: Logger) async throws {
        self.configuration = configuration
        self.logger = logger
        let metrics = HiveMetrics()
        self.metrics = metrics
        hiveID = try HiveIdentity.load(home: configuration.home, logger: logger)
        let catalog = try await ModelCatalog(home: configuration.home, logger: logger)
        self.provisioner = ModelProvisioner(
            catalog: catalog, settings: configuration.downloads, extraModelDirectories: configuration.extraModelDirectories,
            logger: logger, background: background, metrics: metrics)
        // Workers bind the hive's address, in its port range, and are announced with its host.
        var supervision = configuration.supervision
        supervision.workerHost = configuration.host
        supervision.workerAdvertisedHost = configuration.advertisedHost
        self.supervisor = WorkerSupervisor(
            settings: supervision, provisioner: provisioner, token: configuration.token,
            logDirectory: configuration.home + "/logs/workers", logger: logger, metrics: metrics)
    }

    /// The port the server listens on, once it does.
    public func port() async -> Int {
        for await port in portBroadcast.subscribe() { return port }
        return configuration.port
    }

    /// The hive's routes with their middleware (correlation ids, errors, bearer auth).
    public func makeRouter() -> Router<RbeeRequestContext> {
        let router = Router.rbee(token: configuration.token, metrics: metrics.registry)
        HiveRoutes(
            configuration: configuration, provisioner: provisioner, supervisor: supervisor, metrics: metrics, shutdown: shutdownSwitch,
            hiveID: hiveID
        ).register(on: router)
        return router
    }

    public func run(handleSignals: Bool = true) async throws {
        let app = try DaemonServer.application(
            router: makeRouter(), host: configuration.host, port: configuration.port, token: configuration.token,
            serverName: "rbee-hive", logger: logger
        ) { [portBroadcast, supervisor, configuration] port in
            supervisor.setHiveURL(configuration.callbackURL(port: port))
            portBroadcast.publish(port)
        }
        // Listed last, so the first to hear of a shutdown: workers stop before the server does.
        let stop = StopOnRequest(shutdown: shutdownSwitch, supervisor: supervisor, tracker: provisioner.tracker)
        await provisioner.hashPendingModels()
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [.init(service: background), .init(service: supervisor), .init(service: app)]
        if let queenURL = configuration.queenURL {
            let reporter = QueenReporter(
                queenURL: queenURL, name: configuration.name, hiveID: hiveID, interval: configuration.queenHeartbeatInterval, token: configuration.token,
                provisioner: provisioner, supervisor: supervisor,
                hiveURL: { [portBroadcast, configuration] in
                    var port = 0
                    for await bound in portBroadcast.subscribe() { port = bound }
                    return configuration.announcedURL(port: port)
                }, logger: logger)
            services.append(.init(service: reporter, successTerminationBehavior: .ignore))
        }
        services.append(.init(service: stop, successTerminationBehavior: .gracefullyShutdownGroup))
        let group = ServiceGroup(
            configuration: .init(
                services: services,
                gracefulShutdownSignals: handleSignals ? [.sigterm, .sigint] : [], logger: logger))
        try await group.run()
        logger.info("hive stopped")
    }
}

/// On a shutdown (requested over HTTP, or a signal): stops every worker in parallel and cancels
/// running downloads (their subscribers get `error CANCELLED`, the partial files stay for a
/// resume), then ends the group gracefully. The catalog stays.
struct StopOnRequest: Service {
    let shutdown: ShutdownSwitch
    let supervisor: WorkerSupervisor
    let tracker: DownloadTracker

    func run() async throws {
        await cancelWhenGracefulShutdown { [shutdown] in await shutdown.wait() }
        async let workers: Void = supervisor.stopAll()
        async let downloads: Void = tracker.cancelAll()
        _ = await (workers, downloads)
    }
}
