import Hummingbird
import Logging

/// A small HTTP server on a free loopback port for tests: a stand-in for a peer (a hive that
/// records a worker's reports, a queen that records heartbeats) or a file server.
public struct StandInServer: Sendable {
    public let url: String
    private let task: Task<Void, any Error>

    /// Serves `router` until `stop`.
    public static func start(_ router: Router<BasicRequestContext>) async -> StandInServer {
        let ports = AsyncStream<Int>.makeStream()
        var logger = Logger(label: "stand-in")
        logger.logLevel = .critical
        let app = Application(
            router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { channel in
                ports.continuation.yield(channel.localAddress?.port ?? 0)
                ports.continuation.finish()
            }, logger: logger)
        // Owned by the returned value: `stop` cancels it.
        let task = Task { try await app.runService() }
        var port = 0
        for await value in ports.stream { port = value }
        return StandInServer(url: "http://127.0.0.1:\(port)", task: task)
    }

    public func stop() async {
        task.cancel()
        _ = try? await task.value
    }
}
