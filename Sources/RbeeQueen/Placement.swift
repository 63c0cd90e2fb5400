import Logging
import RbeeAPI

/// One request's dealings with the scheduler, from admission to its end: its first lease, the
/// outcome of each lease, and the next lease when the state machine moves it on.
///
/// Whichever way the request ends, its place in the queue or its slot on a worker is given back
/// exactly once: by `finished`, by an outcome the machine ends it with, or, for every other way
/// out (cancellation, an early return, a thrown error), when the placement is released.
final class Placement: Sendable {
    typealias Lease = PlacementStateMachine.Lease

    let id: PlacementStateMachine.RequestID
    /// Place in the queue at admission: 0 when a worker was leased at once.
    let position: Int

    /// Its place in line from the start (1 is next): in the queen's queue, or behind the busy slots
    /// of the worker it was leased to at once; 0 when it starts at once.
    var placeInLine: Int { initial?.queuePosition ?? position }
    private let initial: Lease?
    private let scheduler: Scheduler

    init(scheduler: Scheduler, id: PlacementStateMachine.RequestID, initial: Lease?, position: Int) {
        self.scheduler = scheduler
        self.id = id
        self.initial = initial
        self.position = position
    }

    deinit { scheduler.cancel(id) }

    /// The first lease: at once when placed, else after waiting in the queue.
    func lease() async throws -> Lease {
        if let initial { return initial }
        return try await scheduler.lease(for: id)
    }

    func finished(_ lease: Lease, tokensPerSec: Double?) {
        scheduler.finished(lease, tokensPerSec: tokensPerSec)
    }

    /// The leased worker never became ready: the next lease (on another hive), or the error.
    func coldStartFailed(_ lease: Lease, error: RbeeError, logger: Logger) async throws -> Lease {
        scheduler.coldStartFailed(lease, error: error, logger: logger)
        return try await scheduler.lease(for: id)
    }

    /// The relay failed: the replacement worker's lease, or the error that ends the request.
    func workerFailed(_ lease: Lease, error: RbeeError, replaceable: Bool, workerLost: Bool) async throws -> Lease {
        scheduler.workerFailed(lease, error: error, replaceable: replaceable, workerLost: workerLost)
        return try await scheduler.lease(for: id)
    }
}
