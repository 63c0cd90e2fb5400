import RbeeInference
import ServiceLifecycle

/// Runs the engine for the lifetime of the service group: starts loading at once (unless the
/// configuration leaves that to the caller) and stops the engine thread last, on shutdown.
struct EngineService: Service {
    let engine: Engine
    let loadOnStart: Bool

    func run() async throws {
        if loadOnStart { engine.start() }
        // Keep-alive ticks for every stream, until the group shuts down.
        await cancelWhenGracefulShutdown { [engine] in await engine.runKeepAlives() }
        await engine.shutdown()
    }
}
