import ServiceLifecycle

/// Short calls that outlive the request or event that caused them — asking a hive to start a
/// worker, telling a worker to cancel a job — run here, as children of one task group that the
/// daemon's `ServiceGroup` owns: nothing runs unowned, and shutdown cancels what is left.
///
/// List it before the services that submit work, so it stops after them.
public final class BackgroundTasks: Service, Sendable {
    private let operations: AsyncStream<@Sendable () async -> Void>
    private let continuation: AsyncStream<@Sendable () async -> Void>.Continuation

    public init() {
        (operations, continuation) = AsyncStream.makeStream()
    }

    /// Runs `operation` as a child of the group (once the service runs; dropped after it stopped).
    public func submit(_ operation: @escaping @Sendable () async -> Void) {
        continuation.yield(operation)
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown { [operations] in
            await withDiscardingTaskGroup { group in
                for await operation in operations {
                    group.addTask { await operation() }
                }
            }
        }
        continuation.finish()
    }
}
