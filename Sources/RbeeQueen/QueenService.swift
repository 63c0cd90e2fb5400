import AsyncHTTPClient
import Foundation
import Hummingbird
import Logging
import NIOPosix
import RbeeAPI
import RbeeHTTP
import ServiceLifecycle

/// One `queen-rbee`: the HTTP server, the hive registry and its watch, the scheduler, run as one
/// service group until SIGTERM/SIGINT (with `handleSignals`) or `POST /v1/shutdown`.
public final class QueenService: Sendable {
    public let configuration: QueenConfiguration
    public let metrics = QueenMetrics()
    public let shutdownSwitch = ShutdownSwitch()
    let registry: HiveRegistry
    let scheduler: Scheduler
    let runner: TaskRunner
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
        scheduler = Scheduler(
            registry: registry, hives: hives, maxQueue: configuration.maxQueue, workerQueueDepth: configuration.workerQueueDepth,
            workerParallel: configuration.workerParallel, logger: logger)
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
        runner = TaskRunner(
            scheduler: scheduler, registry: registry, hives: hives, http: http, token: configuration.token?.value,
            keepAliveInterval: configuration.keepAliveInterval, stallTimeout: configuration.stallTimeout, metrics: metrics, logger: logger)
    }

    /// The port the server listens on, once it does.
    public func port() async -> Int {
        for await port in portBroadcast.subscribe() { return port }
        return configuration.port
    }

    /// The queen's routes with their middleware (correlation ids, errors, bearer auth).
    public func makeRouter() -> Router<RbeeRequestContext> {
        let router = Router.rbee(token: configuration.token)
        let routes = QueenRoutes(
            configuration: configuration, registry: registry, scheduler: scheduler, runner: runner, hives: hives, localHive: localHive,
            metrics: metrics, shutdown: shutdownSwitch)
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
        let stop = QueenStop(shutdown: shutdownSwitch, localHive: localHive)
        let group = ServiceGroup(
            configuration: .init(
                services: [
                    .init(service: app), .init(service: watch),
                    .init(service: stop, successTerminationBehavior: .gracefullyShutdownGroup),
                ],
                gracefulShutdownSignals: handleSignals ? [.sigterm, .sigint] : [], logger: logger))
        do {
            try await group.run()
        } catch {
            await localHive?.stop()
            throw error
        }
        logger.info("queen stopped")
    }
}

/// On a shutdown (HTTP or signal): stops the local hive if this queen started it (the hive stops
/// its workers), then ends the group. The registry stays.
struct QueenStop: Service {
    let shutdown: ShutdownSwitch
    let localHive: LocalHive?

    func run() async throws {
        await cancelWhenGracefulShutdown { [shutdown] in await shutdown.wait() }
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
                if !registry.sweep(reported: &unreachable).isEmpty { await scheduler.hivesChanged() }
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
        guard (try? await hives.health(hiveURL: url, timeout: min(interval, .seconds(3)))) != nil,
            let workers = try? await hives.workers(hiveURL: url), let catalog = try? await hives.models(hiveURL: url)
        else { return }
        if (try? await registry.heard(
            name: entry.record.name, url: url, cpuCores: nil, ramAvailableBytes: nil, workers: workers, catalog: catalog, models: catalog.map(\.id),
            source: entry.record.source)) != nil
        {
            await scheduler.sync(hive: entry.record.name, workers: workers)
        }
    }
}
