import Logging
import RbeeAPI
import RbeeHTTP
import RbeeInference
import ServiceLifecycle

/// Listed last in the service group, so it is the first to hear of a graceful shutdown (SIGTERM),
/// and it also answers `ShutdownSwitch` requests. It refuses new work, gives in-flight work the
/// grace period, cancels what is left, and returns — which shuts the rest of the group down:
/// the HTTP server (streams already ended), the hive reporter, then the engine.
struct DrainService: Service {
    let engine: Engine
    let shutdown: ShutdownSwitch
    let grace: Duration
    let logger: Logger

    func run() async throws {
        // Returns on an explicit request, or when graceful shutdown cancels the wait.
        await cancelWhenGracefulShutdown { [shutdown] in await shutdown.wait() }
        engine.beginDrain()
        let before = engine.snapshot()
        logger.info("draining", metadata: ["in_flight": "\(before.slotsBusy + before.queueDepth)", "grace_ms": "\(Int(grace.milliseconds))"])
        if await engine.waitUntilIdle(timeout: grace) {
            logger.info("drained: all in-flight work finished")
        } else {
            let left = engine.snapshot()
            logger.warning("drain grace over: cancelling the rest", metadata: ["in_flight": "\(left.slotsBusy + left.queueDepth)"])
            engine.cancelAll()
            _ = await engine.waitUntilIdle(timeout: .seconds(2))
        }
    }
}
