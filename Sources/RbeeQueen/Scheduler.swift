import DequeModule
import Foundation
import Logging
import RbeeAPI

/// Picks the worker each request runs on, and starts workers where none can take it.
///
/// For model M: a ready worker of M with a free slot (least loaded); else the worker of M with the
/// shortest queue, if that queue is below `workerQueueDepth`; else a new worker on the best hive
/// (M in its catalog > enough free memory > fewest workers), downloading M there first if needed.
/// Requests for M that arrive while that spawn is under way wait for it rather than starting
/// their own. Requests that cannot be placed wait in a FIFO queue of at most `maxQueue`; beyond
/// it they are refused with 429 `QUEUE_FULL` and a `Retry-After` from the recent completion rate.
/// A waiting request is never dropped: it is placed, or it fails with the reason no hive can
/// serve it.
actor Scheduler {
    /// What a request asks for.
    struct Want: Sendable {
        /// The catalog id workers report for the model.
        var modelID: String
        /// What to give a hive to get the model (a reference or the catalog id).
        var modelRef: String
        /// Whether `modelRef` names something a hive can fetch (otherwise only hives that have it can serve).
        var fetchable: Bool
        var hive: String?
        var excludedWorkers: Set<String> = []
        var excludedHives: Set<String> = []
    }

    /// A worker the queen may send requests to.
    struct Worker: Sendable {
        var workerID: String
        var hive: String
        var modelID: String
        var url: String
        var state: HiveWorkerState
        var pid: Int32?
        var slotsTotal: Int
        var slotsBusy = 0
        var queueDepth = 0
        /// Requests of this queen on the worker now.
        var inFlight = 0
        var tokensPerSec: Double?
        var addedAt: ContinuousClock.Instant

        var isServing: Bool { [.starting, .loading, .ready].contains(state) }
    }

    /// A place to run one request; give it back with `release`.
    struct Lease: Sendable {
        let workerID: String
        let hive: String
        let hiveURL: String
        let modelID: String
        let url: String
        /// Whether the worker was ready when leased (otherwise the request follows its warm-up).
        let ready: Bool
        /// Requests that were ahead of this one when it was queued.
        let waitedInQueue: Bool
    }

    private struct Waiter {
        let id: Int
        let want: Want
        let continuation: CheckedContinuation<Lease, any Error>
    }

    private let registry: HiveRegistry
    private let hives: HiveClient
    private let maxQueue: Int
    private let workerQueueDepth: Int
    private let workerParallel: Int?
    private let logger: Logger
    private var workers: [String: Worker] = [:]
    private var waiters = Deque<Waiter>()
    /// Admitted requests on their way into `waiters`.
    private var reserved = 0
    private var nextWaiterID = 0
    /// Models with a spawn request in flight (single flight per model).
    private var spawning: Set<String> = []
    /// Recent spawn failures per model and hive, so the next try goes elsewhere.
    private var failedSpawns: [String: [String: (at: ContinuousClock.Instant, error: RbeeError)]] = [:]
    /// When requests finished, for the Retry-After estimate.
    private var completions = Deque<ContinuousClock.Instant>()

    init(registry: HiveRegistry, hives: HiveClient, maxQueue: Int, workerQueueDepth: Int, workerParallel: Int?, logger: Logger) {
        self.registry = registry
        self.hives = hives
        self.maxQueue = maxQueue
        self.workerQueueDepth = workerQueueDepth
        self.workerParallel = workerParallel
        self.logger = logger
    }

    var queued: Int { waiters.count }

    func list() -> [ClusterWorker] {
        workers.values.map {
            ClusterWorker(
                workerID: $0.workerID, hive: $0.hive, model: $0.modelID, url: $0.url, state: $0.state, pid: $0.pid, slotsTotal: $0.slotsTotal,
                slotsBusy: $0.slotsBusy, queueDepth: $0.queueDepth, queenInFlight: $0.inFlight, tokensPerSec: $0.tokensPerSec)
        }.sorted { ($0.hive, $0.workerID) < ($1.hive, $1.workerID) }
    }

    func worker(_ id: String) -> Worker? { workers[id] }

    // MARK: Placing requests

    enum Admission: Sendable {
        case placed(Lease)
        case wait
    }

    /// The check made before a response starts: a lease at once, or room to wait; otherwise the
    /// error (429 `QUEUE_FULL` with `Retry-After`, or why no hive can serve the request).
    func admit(_ want: Want) throws(RbeeError) -> Admission {
        if waiters.isEmpty, let lease = place(want, waited: false) { return .placed(lease) }
        if let error = hopeless(want) { throw error }
        guard waiters.count + reserved < maxQueue else { throw queueFull() }
        // The place in the queue is held from now: admission and queueing are two steps.
        reserved += 1
        return .wait
    }

    private func queueFull() -> RbeeError {
        RbeeError(
            .queueFull, "\(waiters.count + reserved) requests are already waiting; try again later",
            details: ["queued": .number(Double(waiters.count + reserved)), "max_queue": .number(Double(maxQueue))], retryAfter: retryAfter())
    }

    /// A lease for `want`, at once or after waiting in the queue. `onQueued` hears the position
    /// (0 when the request is placed at once) before any wait.
    func acquire(_ want: Want, admitted: Bool, onQueued: @Sendable (Int) -> Void) async throws -> Lease {
        if admitted { reserved -= 1 }
        if waiters.isEmpty, let lease = place(want, waited: false) {
            onQueued(0)
            return lease
        }
        if let error = hopeless(want) { throw error }
        guard admitted || waiters.count + reserved < maxQueue else { throw queueFull() }
        let id = nextWaiterID
        nextWaiterID += 1
        onQueued(waiters.count + 1)
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                waiters.append(Waiter(id: id, want: want, continuation: continuation))
                drain()
            }
        } onCancel: {
            Task { await self.cancelWaiter(id) }
        }
    }

    private func cancelWaiter(_ id: Int) {
        guard let index = waiters.firstIndex(where: { $0.id == id }) else { return }
        waiters.remove(at: index).continuation.resume(throwing: CancellationError())
    }

    /// Places waiting requests in order; fails those no hive can serve.
    private func drain() {
        var index = 0
        while index < waiters.count {
            let waiter = waiters[index]
            if let lease = place(waiter.want, waited: true) {
                waiters.remove(at: index)
                waiter.continuation.resume(returning: lease)
            } else if let error = hopeless(waiter.want) {
                waiters.remove(at: index)
                waiter.continuation.resume(throwing: error)
            } else {
                index += 1
            }
        }
    }

    /// A worker with room for `want`, leased; or nil (after starting a spawn when one is due).
    private func place(_ want: Want, waited: Bool) -> Lease? {
        let candidates = workers.values.filter { worker in
            worker.modelID == want.modelID && worker.isServing && !want.excludedWorkers.contains(worker.workerID)
                && !want.excludedHives.contains(worker.hive) && (want.hive == nil || worker.hive == want.hive)
                && registry.isOnline(worker.hive)
        }
        let free = candidates.filter { $0.state == .ready && $0.inFlight < $0.slotsTotal }
        let chosen =
            free.min { Double($0.inFlight) / Double($0.slotsTotal) < Double($1.inFlight) / Double($1.slotsTotal) }
            ?? candidates.filter { $0.inFlight < $0.slotsTotal + workerQueueDepth }.min { a, b in
                (a.inFlight - a.slotsTotal, a.state == .ready ? 0 : 1) < (b.inFlight - b.slotsTotal, b.state == .ready ? 0 : 1)
            }
        if let chosen {
            workers[chosen.workerID]?.inFlight += 1
            return Lease(
                workerID: chosen.workerID, hive: chosen.hive, hiveURL: registry.entry(chosen.hive)?.record.url ?? "", modelID: chosen.modelID,
                url: chosen.url, ready: chosen.state == .ready, waitedInQueue: waited)
        }
        if !spawning.contains(want.modelID), let hive = spawnTarget(want, busyHives: Set(candidates.map(\.hive))) {
            spawn(want, on: hive)
        }
        return nil
    }

    /// Why `want` can never be placed now, or nil while there is hope (a worker of the model, a
    /// spawn under way, or a hive that could start one).
    private func hopeless(_ want: Want) -> RbeeError? {
        let serving = workers.values.contains { worker in
            worker.modelID == want.modelID && worker.isServing && !want.excludedWorkers.contains(worker.workerID)
                && !want.excludedHives.contains(worker.hive) && (want.hive == nil || worker.hive == want.hive)
                && registry.isOnline(worker.hive)
        }
        if serving || spawning.contains(want.modelID) { return nil }
        if spawnTarget(want, busyHives: []) != nil { return nil }
        if let failure = failedSpawns[want.modelID]?.values.max(by: { $0.at < $1.at }) { return failure.error }
        if let hive = want.hive {
            guard registry.entry(hive) != nil else {
                return RbeeError(.hiveNotFound, "no hive named \(hive) is registered", details: ["hive": .string(hive)])
            }
            guard registry.isOnline(hive) else {
                return RbeeError(.hiveUnreachable, "hive \(hive) is unreachable", details: ["hive": .string(hive)], retryAfter: 10)
            }
        }
        if registry.online().isEmpty {
            return RbeeError(.hiveUnreachable, "no hive is online", retryAfter: 10)
        }
        return RbeeError(
            .modelNotFound, "no hive has the model \(want.modelRef)",
            details: ["model": .string(want.modelRef), "hives": .array(registry.online().map { .string($0.record.name) })])
    }

    /// The hive a new worker for `want` should start on.
    private func spawnTarget(_ want: Want, busyHives: Set<String>) -> HiveRegistry.Entry? {
        let now = ContinuousClock.now
        let recentFailures = (failedSpawns[want.modelID] ?? [:]).filter { now - $0.value.at < .seconds(30) }
        let hasWorker = Set(workers.values.filter { $0.modelID == want.modelID && $0.isServing }.map(\.hive))
        let options = registry.online().filter { entry in
            let name = entry.record.name
            return (want.hive == nil || name == want.hive) && !want.excludedHives.contains(name) && recentFailures[name] == nil
                && !hasWorker.contains(name) && !busyHives.contains(name)
                && (want.fetchable || entry.record.models.contains(want.modelID))
        }
        let size = registry.allEntries().lazy.flatMap(\.catalog).first { $0.id == want.modelID }?.sizeBytes ?? 0
        return options.min { a, b in
            func rank(_ entry: HiveRegistry.Entry) -> (Int, Int, Int) {
                let has = entry.record.models.contains(want.modelID) ? 0 : 1
                let fits = (entry.record.ramAvailableBytes ?? Int.max) >= Int(Double(size) * 1.2) ? 0 : 1
                let load = entry.workers.filter { [.starting, .loading, .ready].contains($0.state) }.count
                return (has, fits, load)
            }
            return rank(a) < rank(b) || (rank(a) == rank(b) && a.record.name < b.record.name)
        }
    }

    private func spawn(_ want: Want, on entry: HiveRegistry.Entry) {
        spawning.insert(want.modelID)
        let hive = entry.record.name
        // A hive that has the model gets its catalog id: the client's reference may name a source
        // that hive cannot reach.
        let reference = entry.record.models.contains(want.modelID) ? want.modelID : want.modelRef
        let request = WorkerSpawnRequest(modelRef: reference, parallel: workerParallel, reuse: true)
        logger.info("spawning a worker", metadata: ["hive": "\(hive)", "model": "\(want.modelRef)"])
        Task {
            do throws(RbeeError) {
                let info = try await hives.spawn(request, hiveURL: entry.record.url)
                self.spawned(info, hive: hive, want: want)
            } catch {
                self.spawnFailed(modelID: want.modelID, hive: hive, error: error)
            }
        }
    }

    private func spawned(_ info: HiveWorkerInfo, hive: String, want: Want) {
        spawning.remove(want.modelID)
        if info.modelID != want.modelID {
            logger.warning(
                "hive reports another model id than expected", metadata: ["expected": "\(want.modelID)", "reported": "\(info.modelID)"])
        }
        upsert(info, hive: hive, modelID: want.modelID)
        drain()
        // A spawn may have added the model to the hive's catalog (an import, a download).
        Task { [registry, hives] in
            guard let entry = registry.entry(hive), let catalog = try? await hives.models(hiveURL: entry.record.url) else { return }
            registry.updateCatalog(hive, catalog)
        }
    }

    /// A spawn or warm-up on `hive` failed: the next request for the model tries another hive.
    func spawnFailed(modelID: String, hive: String, error: RbeeError, workerID: String? = nil) {
        spawning.remove(modelID)
        failedSpawns[modelID, default: [:]][hive] = (.now, error)
        if let workerID { workers.removeValue(forKey: workerID) }
        logger.warning("worker could not start", metadata: ["hive": "\(hive)", "model": "\(modelID)", "error": "\(error)"])
        drain()
    }

    private func upsert(_ info: HiveWorkerInfo, hive: String, modelID: String? = nil) {
        var worker =
            workers[info.workerID]
            ?? Worker(
                workerID: info.workerID, hive: hive, modelID: modelID ?? info.modelID, url: info.url, state: info.state, pid: info.pid,
                slotsTotal: 0, addedAt: .now)
        // A worker the queen saw become ready does not go back to loading on a late heartbeat.
        if !(worker.state == .ready && [.starting, .loading].contains(info.state)) { worker.state = info.state }
        worker.url = info.url
        worker.pid = info.pid ?? worker.pid
        worker.slotsTotal = info.slotsTotal > 0 ? info.slotsTotal : max(worker.slotsTotal, workerParallel ?? 4)
        worker.slotsBusy = info.slotsBusy
        worker.queueDepth = info.queueDepth
        workers[info.workerID] = worker
    }

    // MARK: Events

    /// A lease is over; `tokensPerSec` from its `end`, when it had one.
    func release(_ lease: Lease, tokensPerSec: Double?) {
        if var worker = workers[lease.workerID] {
            worker.inFlight = max(0, worker.inFlight - 1)
            if let tokensPerSec, tokensPerSec > 0 {
                worker.tokensPerSec = worker.tokensPerSec.map { $0 * 0.7 + tokensPerSec * 0.3 } ?? tokensPerSec
            }
            workers[lease.workerID] = worker
        }
        let now = ContinuousClock.now
        completions.append(now)
        while let first = completions.first, now - first > .seconds(60) { completions.removeFirst() }
        drain()
    }

    /// The worker finished loading.
    func markReady(_ workerID: String, slotsTotal: Int? = nil) {
        workers[workerID]?.state = .ready
        if let slotsTotal, slotsTotal > 0 { workers[workerID]?.slotsTotal = slotsTotal }
        drain()
    }

    /// The worker died or cannot be reached: no new work goes to it.
    func workerLost(_ workerID: String) {
        guard workers.removeValue(forKey: workerID) != nil else { return }
        logger.warning("worker lost", metadata: ["worker_id": "\(workerID)"])
        drain()
    }

    /// A hive's current worker list (heartbeat or probe).
    func sync(hive: String, workers reported: [HiveWorkerInfo]) {
        let now = ContinuousClock.now
        for info in reported {
            if [.starting, .loading, .ready].contains(info.state) {
                upsert(info, hive: hive)
            } else if let known = workers[info.workerID], known.hive == hive {
                workers.removeValue(forKey: info.workerID)
                logger.info("worker gone", metadata: ["worker_id": "\(info.workerID)", "hive": "\(hive)", "state": "\(info.state.rawValue)"])
            }
        }
        let listed = Set(reported.map(\.workerID))
        for worker in workers.values where worker.hive == hive && !listed.contains(worker.workerID) && now - worker.addedAt > .seconds(5) {
            workers.removeValue(forKey: worker.workerID)
        }
        drain()
    }

    /// A hive left the registry (or became unreachable): its waiters may now be hopeless.
    func hivesChanged() { drain() }

    /// Seconds until a queued request is likely to start, from the completion rate of the last minute.
    func retryAfter() -> Int {
        guard let first = completions.first else { return 5 }
        let window = max(1, (ContinuousClock.now - first).milliseconds / 1000)
        let rate = Double(completions.count) / window
        return min(120, max(1, Int((Double(waiters.count + 1) / max(rate, 0.01)).rounded(.up))))
    }
}
