import Foundation
import Logging
import RbeeAPI
import RbeeHTTP
import Synchronization

/// Runs the queen's `PlacementStateMachine`: every event goes through it under one lock, and its
/// actions are carried out here — leases and failures handed to the requests waiting for them,
/// spawns and catalog refreshes run in the queen's `BackgroundTasks`.
final class Scheduler: Sendable {
    typealias Machine = PlacementStateMachine
    typealias RequestID = Machine.RequestID

    private struct State {
        var machine: Machine
        /// Requests suspended in `lease(for:)`.
        var waiting: [RequestID: CheckedContinuation<Machine.Lease, any Error>] = [:]
        /// Decisions for requests not waiting yet.
        var decided: [RequestID: Result<Machine.Lease, RbeeError>] = [:]
        var cancelledWaits: Set<RequestID> = []
    }

    private let state: Mutex<State>
    private let registry: HiveRegistry
    private let hives: HiveClient
    private let background: BackgroundTasks
    private let logger: Logger

    init(settings: Machine.Settings, registry: HiveRegistry, hives: HiveClient, background: BackgroundTasks, logger: Logger) {
        state = Mutex(State(machine: Machine(settings: settings)))
        self.registry = registry
        self.hives = hives
        self.background = background
        self.logger = logger
    }

    var queued: Int { state.withLock { $0.machine.queuedCount } }

    func list() -> [ClusterWorker] {
        state.withLock { $0.machine.workerList }.map {
            ClusterWorker(
                workerID: $0.workerID, hive: $0.hive, model: $0.modelID, url: $0.url, state: $0.state, pid: $0.pid, slotsTotal: $0.slotsTotal,
                slotsBusy: $0.slotsBusy, queueDepth: $0.queueDepth, queenInFlight: $0.inFlight, tokensPerSec: $0.tokensPerSec, device: $0.device,
                chatTemplate: $0.chatTemplate)
        }
    }

    func worker(_ id: String) -> Machine.Worker? { state.withLock { $0.machine.workers[id] } }

    // MARK: Requests

    /// Admits a request: a `Placement` that holds its place from now until it ends, or the reason
    /// it cannot run (429 `QUEUE_FULL` with `Retry-After`, or why no hive can serve it).
    func admit(_ want: Machine.Want) throws(RbeeError) -> Placement {
        switch apply({ state, now in state.machine.admit(want, now: now) }) {
        case .placed(let lease): return Placement(scheduler: self, id: lease.requestID, initial: lease, position: 0)
        case .queued(let id, let position): return Placement(scheduler: self, id: id, initial: nil, position: position)
        case .refused(let error): throw error
        }
    }

    /// Waits for the request's next lease (or the error that ends it).
    func lease(for id: RequestID) async throws -> Machine.Lease {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Machine.Lease, any Error>) in
                let ready: Result<Machine.Lease, any Error>? = state.withLock { state in
                    if state.cancelledWaits.remove(id) != nil { return .failure(CancellationError()) }
                    if let decided = state.decided.removeValue(forKey: id) { return decided.mapError { $0 } }
                    state.waiting[id] = continuation
                    return nil
                }
                if let ready { continuation.resume(with: ready) }
            }
        } onCancel: {
            let continuation = state.withLock { state in
                let continuation = state.waiting.removeValue(forKey: id)
                if continuation == nil { state.cancelledWaits.insert(id) }
                return continuation
            }
            continuation?.resume(throwing: CancellationError())
        }
    }

    func cancel(_ id: RequestID) {
        apply { state, now in
            state.cancelledWaits.remove(id)
            state.decided.removeValue(forKey: id)
            return ((), state.machine.cancel(id, now: now))
        }
    }

    func finished(_ lease: Machine.Lease, tokensPerSec: Double?) {
        perform { $0.finished(lease, tokensPerSec: tokensPerSec, now: $1) }
    }

    func coldStartFailed(_ lease: Machine.Lease, error: RbeeError, logger: Logger) {
        logger.warning("cold start failed; trying another hive", metadata: ["hive": "\(lease.hive)", "worker_id": "\(lease.workerID)", "error": "\(error)"])
        perform { $0.coldStartFailed(lease, error: error, now: $1) }
    }

    func workerFailed(_ lease: Machine.Lease, error: RbeeError, replaceable: Bool, workerLost: Bool) {
        perform { $0.workerFailed(lease, error: error, replaceable: replaceable, workerLost: workerLost, now: $1) }
    }

    // MARK: Workers and hives

    func workerReady(_ workerID: String, url: String) { perform { $0.workerReady(workerID, url: url, now: $1) } }

    func workerLost(_ workerID: String) {
        logger.warning("worker lost", metadata: ["worker_id": "\(workerID)"])
        perform { $0.workerLost(workerID, now: $1) }
    }

    /// The registry changed (a hive added, removed, heard from or gone silent).
    func hivesChanged() {
        let snapshot = registry.placementView()
        perform { $0.updateHives(snapshot, now: $1) }
    }

    /// A hive's worker list arrived (heartbeat or probe); the registry has taken it already.
    func workersReported(hive: String, workers: [HiveWorkerInfo]) {
        let snapshot = registry.placementView()
        perform { machine, now in
            machine.updateHives(snapshot, now: now) + machine.workersReported(hive: hive, workers: workers, now: now)
        }
    }

    // MARK: Carrying out actions

    private func perform(_ event: (inout Machine, ContinuousClock.Instant) -> [Machine.Action]) {
        apply { state, now in ((), event(&state.machine, now)) }
    }

    /// Applies an event and carries out its actions outside the lock.
    @discardableResult
    private func apply<T>(_ event: (inout State, ContinuousClock.Instant) -> (T, [Machine.Action])) -> T {
        var resumptions: [(CheckedContinuation<Machine.Lease, any Error>, Result<Machine.Lease, RbeeError>)] = []
        let (value, actions) = state.withLock { state -> (T, [Machine.Action]) in
            let (value, actions) = event(&state, .now)
            for action in actions {
                let decision: (RequestID, Result<Machine.Lease, RbeeError>)
                switch action {
                case .lease(let lease): decision = (lease.requestID, .success(lease))
                case .fail(let id, let error): decision = (id, .failure(error))
                case .spawn, .refreshCatalog: continue
                }
                if let continuation = state.waiting.removeValue(forKey: decision.0) {
                    resumptions.append((continuation, decision.1))
                } else {
                    state.decided[decision.0] = decision.1
                }
            }
            return (value, actions)
        }
        for (continuation, result) in resumptions { continuation.resume(with: result.mapError { $0 }) }
        for action in actions {
            switch action {
            case .spawn(let order): spawn(order)
            case .refreshCatalog(let hive, let url): refreshCatalog(hive: hive, url: url)
            case .lease, .fail: break
            }
        }
        return value
    }

    private func spawn(_ order: Machine.SpawnOrder) {
        var logger = logger
        if let id = order.correlationID { logger[metadataKey: "correlation_id"] = .string(id) }
        logger.info("spawning a worker", metadata: ["hive": "\(order.hive)", "model": "\(order.reference)"])
        let request = WorkerSpawnRequest(modelRef: order.reference, parallel: order.parallel, reuse: true)
        background.submit { [self, logger] in
            do throws(RbeeError) {
                let info = try await hives.spawn(request, hiveURL: order.hiveURL, correlationID: order.correlationID, deadline: order.deadline)
                if info.modelID != order.modelID {
                    logger.warning("hive reports another model id than expected", metadata: ["expected": "\(order.modelID)", "reported": "\(info.modelID)"])
                }
                perform { $0.spawnSucceeded(order, worker: info, now: $1) }
            } catch {
                logger.warning("worker could not start", metadata: ["hive": "\(order.hive)", "model": "\(order.modelID)", "error": "\(error)"])
                perform { $0.spawnFailed(order, error: error, now: $1) }
            }
        }
    }

    private func refreshCatalog(hive: String, url: String) {
        background.submit { [self] in await refreshCatalog(hive: hive, url: url, correlationID: nil) }
    }

    /// Reads a hive's catalog now (after a download or a spawn changed it), so the model list and
    /// placement see the change before the hive's next heartbeat.
    func refreshCatalog(hive: String, url: String, correlationID: String?) async {
        guard let catalog = try? await hives.catalog(hiveURL: url, correlationID: correlationID) else { return }
        registry.updateCatalog(hive, catalog.models, version: catalog.version)
        hivesChanged()
    }
}
