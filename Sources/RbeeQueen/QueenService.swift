import AsyncHTTPClient
import Foundation
import Hummingbird
import Logging
import NIOPosix
import RbeeAPI
import RbeeHTTP
import ServiceLifecycle

/// One `queen-rbee`: the HTTP server, the hive registry and its watch, the scheduler, the local
/// hive, run as one service group until SIGTERM/SIGINT (with `handleSignals`) or
/// `POST /v1/shutdown`; then it drains (`QueenDrain`).
public final class QueenService: Sendable {
    public let configuration: QueenConfiguration
    public let metrics = QueenMetrics()
    public let shutdownSwitch = ShutdownSwitch()
    let registry: HiveRegistry
    let scheduler: Scheduler
    let tasks = RunningTasks()
    let background = BackgroundTasks()
    let hives: HiveClient
    let localHive: LocalHive?
    let http: HTTPClient
    private let logger: Logger
    private let portBroadcast = ProgressBroadcast<Int>(isTerminal: { _ in true })

    public init(configuration: QueenConfiguration, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        http = .rbee
        registry = try HiveRegistry(home: configuration.home, unreachableAfter: configuration.unreachableAfter, logger: logger)
        hives = HiveClient(http: http, token: configuration.token?.value)
        var settings = PlacementStateMachine.Settings()
        settings.maxQueue = configuration.maxQueue
        settings.workerQueueDepth = configuration.workerQueueDepth
        settings.workerParallel = configuration.workerParallel
        settings.unreachableAfter = configuration.unreachableAfter
        scheduler = Scheduler(settings: settings, registry: registry, hives: hives, background: background, logger: logger)
        let portBroadcast = self.portBroadcast
        localHive =
            configuration.startLocalHive
            ? LocalHive(
                configuration: configuration, registry: registry, hives: hives,
                queenURL: {
                    var port = configuration.port
                    for await bound in portBroadcast.subscribe() { port = bound }
                    return "http://127.0.0.1:\(port)"
                }, logger: logger) : nil
        // Hives known from an earlier run count from the start.
        scheduler.hivesChanged()
    }

    /// The port the server listens on, once it does.
    public func port() async -> Int {
        for await port in portBroadcast.subscribe() { return port }
        return configuration.port
    }

    /// The queen's routes with their middleware (correlation ids, errors, bearer auth).
    public func makeRouter() -> Router<RbeeRequestContext> {
        let router = Router.rbee(
            token: configuration.token, errors: OpenAIRoutes.errorRenderer, metrics: metrics.registry, corsOrigins: configuration.corsOrigins)
        let routes = QueenRoutes(
            configuration: configuration, registry: registry, scheduler: scheduler, tasks: tasks, hives: hives, localHive: localHive,
            background: background, http: http, metrics: metrics, shutdown: shutdownSwitch)
        routes.register(on: router)
        OpenAIRoutes(queen: routes).register(on: router)
        return router
    }

    public func run(handleSignals: Bool = true) async throws {
        let app = try DaemonServer.application(
            router: makeRouter(), host: configuration.host, port: configuration.port, token: configuration.token, serverName: "queen-rbee",
            logger: logger
        ) { [portBroadcast] port in portBroadcast.publish(port) }
        let watch = HiveWatch(registry: registry, scheduler: scheduler, hives: hives, interval: configuration.hiveHeartbeatInterval)
        let drain = QueenDrain(shutdown: shutdownSwitch, tasks: tasks, grace: configuration.drainGrace, localHive: localHive, logger: logger)
        // Shut down in reverse order: the drain first (while the server still answers), the
        // background tasks last.
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [.init(service: background), .init(service: app)]
        if let localHive { services.append(.init(service: localHive)) }
        services.append(.init(service: watch))
        services.append(.init(service: drain, successTerminationBehavior: .gracefullyShutdownGroup))
        let group = ServiceGroup(
            configuration: .init(services: services, gracefulShutdownSignals: handleSignals ? [.sigterm, .sigint] : [], logger: logger))
        try await group.run()
        logger.info("queen stopped")
    }
}

/// Listed last in the service group, so the first to hear of a shutdown (HTTP or signal); it also
/// answers `ShutdownSwitch` requests. New tasks get 503 from now on; tasks in flight get the grace
/// period to finish, then are ended (`error UNAVAILABLE` + `[DONE]`); then the local hive this
/// queen started is stopped (it stops its workers). Its return shuts the rest of the group down.
/// The registry stays.
struct QueenDrain: Service {
    let shutdown: ShutdownSwitch
    let tasks: RunningTasks
    let grace: Duration
    let localHive: LocalHive?
    let logger: Logger

    func run() async throws {
        await cancelWhenGracefulShutdown { [shutdown] in await shutdown.wait() }
        tasks.beginDrain()
        logger.info("draining", metadata: ["in_flight": "\(tasks.count)", "grace_ms": "\(Int(grace.milliseconds))"])
        if await tasks.waitUntilEmpty(timeout: grace) {
            logger.info("drained: all in-flight tasks finished")
        } else {
            logger.warning("drain grace over: ending the rest", metadata: ["in_flight": "\(tasks.count)"])
            tasks.stopAll(reason: .shutdown)
            _ = await tasks.waitUntilEmpty(timeout: .seconds(5))
        }
        await localHive?.stop()
    }
}

/// Marks hives silent for 3 heartbeat intervals unreachable, and probes hives that do not send
/// heartbeats (added with `POST /v1/hives` and not pointed at this queen) once per interval.
struct HiveWatch: Service {
    let registry: HiveRegistry
    let scheduler: Scheduler
    let hives: HiveClient
    let interval: Duration

    func run() async throws {
        await cancelWhenGracefulShutdown {
            var unreachable = Set<String>()
            var lastProbe = ContinuousClock.now
            while !Task.isCancelled {
                try? await Task.sleep(for: min(interval / 4, .seconds(1)))
                if !registry.sweep(reported: &unreachable).isEmpty { scheduler.hivesChanged() }
                guard ContinuousClock.now - lastProbe >= interval else { continue }
                lastProbe = .now
                let quiet = registry.allEntries().filter { ContinuousClock.now - $0.lastHeard >= interval }
                await withTaskGroup(of: Void.self) { group in
                    for entry in quiet { group.addTask { await probe(entry) } }
                }
            }
        }
    }

    private func probe(_ entry: HiveRegistry.Entry) async {
        let url = entry.record.url
        guard let health = try? await hives.health(hiveURL: url, timeout: min(interval, .seconds(3))),
            let workers = try? await hives.workers(hiveURL: url), let catalog = try? await hives.catalog(hiveURL: url)
        else { return }
        // Another hive answering at this address (another id) is refused: the entry stays unreachable.
        if (try? await registry.heard(
            name: entry.record.name, url: url, cpuCores: nil, ramAvailableBytes: nil, workers: workers, catalog: catalog.models,
            models: catalog.models.map(\.id), source: entry.record.source, hiveID: health.hiveID, catalogVersion: catalog.version)) != nil
        {
            scheduler.workersReported(hive: entry.record.name, workers: workers)
        }
    }
}
