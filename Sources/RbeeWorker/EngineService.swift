import RbeeInference
import ServiceLifecycle

/// Runs the engine for the lifetime of the service group: starts loading at once (unless the
/// configuration leaves that to the caller), ticks every stream's keep-alives, and stops the
/// engine thread last, on shutdown.
struct EngineService: Service {
    let engine: Engine
    let loadOnStart: Bool

    func run() async throws {
        if loadOnStart { engine.start() }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await engine.runKeepAlives() }
            try? await gracefulShutdown()
            group.cancelAll()
        }
        await engine.shutdown()
    }
}
