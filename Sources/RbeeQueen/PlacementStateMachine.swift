import DequeModule
import RbeeAPI

/// Where each request of the queen runs, decided as a value: events come in (a request admitted,
/// a lease that ended, hives and workers reported, a spawn answered), actions go out (lease a
/// worker to a request, fail a request, spawn a worker, refresh a catalog). The clock and what is
/// known of the hives are inputs, so every rule below is a unit test without sockets or sleeps;
/// `Scheduler` runs the actions.
///
/// For a request for model M:
/// - a ready worker of M with a free slot, the least loaded first; else the worker of M with the
///   shortest queue, while that queue is below `workerQueueDepth`;
/// - else a new worker on the best hive: M in its catalog > enough free RAM for M
///   (`memoryHeadroom` × its size) > fewest workers > name. One spawn per model at a time:
///   requests for M that arrive meanwhile wait for that worker and are leased to it while it loads;
/// - requests that cannot be placed wait in arrival order, at most `maxQueue` of them; beyond that
///   they are refused with 429 `QUEUE_FULL` and a `Retry-After` from the completion rate of the
///   last minute;
/// - a cold start that fails on a hive moves the request on to the next hive, and new requests
///   avoid that hive for M for `spawnFailureMemory`;
/// - a worker that fails before a request's first token is replaced once for that request;
/// - a request that no hive can serve now fails at once, with the reason.
struct PlacementStateMachine: Sendable {
    typealias RequestID = UInt64
    typealias Instant = ContinuousClock.Instant

    struct Settings: Sendable {
        var maxQueue = 256
        var workerQueueDepth = 4
        /// Slots asked of the workers the queen spawns (nil: the worker's default).
        var workerParallel: Int?
        var spawnFailureMemory: Duration = .seconds(30)
        var completionWindow: Duration = .seconds(60)
        /// A worker a spawn answered with, not yet in a report of its hive, is kept this long.
        var unlistedWorkerGrace: Duration = .seconds(5)
        /// Free RAM a hive needs for a model, as a multiple of the model's size.
        var memoryHeadroom = 1.2
        /// Slots assumed for a worker that has not said how many it has.
        var defaultSlots = 4
        /// A hive not heard from for this long is unreachable: 3 heartbeat intervals.
        var unreachableAfter: Duration = .seconds(30)
    }

    /// What a request asks for.
    struct Want: Sendable, Equatable {
        /// The catalog id workers report for the model.
        var modelID: String
        /// What to give a hive to get the model (the client's reference, or the catalog id).
        var modelRef: String
        /// Whether `modelRef` names something a hive can fetch (otherwise only hives that have it can serve).
        var fetchable: Bool
        /// Only this hive.
        var hive: String?
        /// The request's correlation id, carried into the calls made for it (a spawn).
        var correlationID: String?
        /// The request's `X-Request-Deadline`, forwarded unchanged on the calls made for it.
        var deadline: String?
    }

    /// What the registry knows of a hive now.
    struct Hive: Sendable, Equatable {
        var name: String
        var url: String
        /// When it was last heard from (a heartbeat, a probe, its registration): whether it is
        /// online is judged at each decision's `now`, so no sweep has to run first.
        var lastHeard: Instant
        /// Catalog ids of its models.
        var models: Set<String> = []
        /// Sizes of its models, by catalog id.
        var modelSizes: [String: Int] = [:]
        var ramAvailableBytes: Int?
    }

    /// A worker the queen may send requests to.
    struct Worker: Sendable, Equatable {
        var workerID: String
        var hive: String
        var modelID: String
        var url: String
        var state: HiveWorkerState
        var pid: Int32?
        var slotsTotal: Int
        var slotsBusy = 0
        var queueDepth = 0
        /// This queen's requests on the worker now.
        var inFlight = 0
        var tokensPerSec: Double?
        var device: String?
        /// The loaded model's chat template, as the hive reported it.
        var chatTemplate: ChatTemplateInfo?
        var addedAt: Instant

        var isServing: Bool { [.starting, .loading, .ready].contains(state) }
    }

    /// A worker given to one request; it ends with `finished`, `coldStartFailed`, `workerFailed` or `cancel`.
    struct Lease: Sendable, Equatable {
        let requestID: RequestID
        let workerID: String
        let hive: String
        let hiveURL: String
        let modelID: String
        let url: String
        /// Whether the worker was ready when leased; otherwise the request follows its warm-up.
        let ready: Bool
        /// Its place in line behind the worker's busy slots (1 is next), 0 when a slot was free.
        var queuePosition = 0
    }

    /// A worker to start on a hive.
    struct SpawnOrder: Sendable, Equatable {
        var modelID: String
        var hive: String
        var hiveURL: String
        /// The catalog id when the hive has the model, else the client's reference.
        var reference: String
        var parallel: Int?
        /// The correlation id of the request that caused the spawn.
        var correlationID: String?
        /// That request's `X-Request-Deadline`.
        var deadline: String?
    }

    enum Action: Sendable, Equatable {
        /// Give the request this worker.
        case lease(Lease)
        /// End the request with this error.
        case fail(RequestID, RbeeError)
        case spawn(SpawnOrder)
        /// A spawn may have added a model to the hive's catalog (an import, a download).
        case refreshCatalog(hive: String, url: String)
    }

    enum Admission: Sendable, Equatable {
        case placed(Lease)
        /// Waits for a lease; `position` 1 is next.
        case queued(RequestID, position: Int)
        case refused(RbeeError)
    }

    private struct Request: Sendable {
        let id: RequestID
        let want: Want
        var excludedWorkers: Set<String> = []
        var excludedHives: Set<String> = []
        var replacedWorker = false
        /// The worker it holds a slot on, while leased.
        var workerID: String?
    }

    private struct SpawnFailure: Sendable {
        var at: Instant
        var error: RbeeError
    }

    let settings: Settings
    private(set) var hives: [String: Hive] = [:]
    private(set) var workers: [String: Worker] = [:]
    private var requests: [RequestID: Request] = [:]
    /// Waiting requests, in arrival order (ids grow with arrival).
    private var queue: Deque<RequestID> = []
    /// The hive a spawn for each model is under way on.
    private var spawning: [String: String] = [:]
    private var failedSpawns: [String: [String: SpawnFailure]] = [:]
    private var completions: Deque<Instant> = []
    private var nextID: RequestID = 1

    init(settings: Settings = Settings()) {
        self.settings = settings
    }

    var queuedCount: Int { queue.count }

    /// Requests admitted and not yet ended: waiting or leased.
    var requestCount: Int { requests.count }

    /// Workers for listings, in a stable order.
    var workerList: [Worker] { workers.values.sorted { ($0.hive, $0.workerID) < ($1.hive, $1.workerID) } }

    // MARK: Requests

    /// A new request: placed at once, queued, or refused with the reason.
    mutating func admit(_ want: Want, now: Instant) -> (Admission, [Action]) {
        let id = nextID
        nextID += 1
        requests[id] = Request(id: id, want: want)
        var actions: [Action] = []
        // Earlier waiters were offered every worker they could take, so a worker this request can
        // take now is one no earlier waiter can: placing it at once keeps the queue's order.
        if let lease = place(id, now: now, actions: &actions) { return (.placed(lease), actions) }
        if let error = hopeless(id, now: now) {
            requests[id] = nil
            return (.refused(error), actions)
        }
        guard queue.count < settings.maxQueue else {
            requests[id] = nil
            return (.refused(queueFull(now: now)), actions)
        }
        queue.append(id)
        return (.queued(id, position: queue.count), actions)
    }

    /// The request ended before it finished (its client left, it was cancelled): its place in the
    /// queue or its slot on a worker is given back. Unknown or ended requests are ignored.
    mutating func cancel(_ id: RequestID, now: Instant) -> [Action] {
        guard let request = requests.removeValue(forKey: id) else { return [] }
        if let workerID = request.workerID { releaseSlot(workerID, tokensPerSec: nil) }
        queue.removeAll { $0 == id }
        return drain(now: now)
    }

    /// The request finished on its worker; `tokensPerSec` from its `end`.
    mutating func finished(_ lease: Lease, tokensPerSec: Double?, now: Instant) -> [Action] {
        guard requests.removeValue(forKey: lease.requestID) != nil else { return [] }
        releaseSlot(lease.workerID, tokensPerSec: tokensPerSec)
        completions.append(now)
        trimCompletions(now: now)
        return drain(now: now)
    }

    /// The leased worker never became ready (its download, spawn or load failed): the hive is
    /// avoided for the model for a while, and the request moves on to another hive — or fails with
    /// `error` when none is left.
    mutating func coldStartFailed(_ lease: Lease, error: RbeeError, now: Instant) -> [Action] {
        failedSpawns[lease.modelID, default: [:]][lease.hive] = SpawnFailure(at: now, error: error)
        workers.removeValue(forKey: lease.workerID)
        guard var request = requests[lease.requestID] else { return drain(now: now) }
        request.workerID = nil
        request.excludedHives.insert(lease.hive)
        requests[request.id] = request
        requeue(request.id)
        return drain(now: now)
    }

    /// The relay to the leased worker failed. `replaceable`: nothing reached the client yet and the
    /// failure is the worker's, not the request's (it died, refused or was busy). Once per request
    /// such a failure moves it to another worker; otherwise the request fails with `error`.
    /// `workerLost`: the worker is gone or broken, and gets no more work.
    mutating func workerFailed(_ lease: Lease, error: RbeeError, replaceable: Bool, workerLost: Bool, now: Instant) -> [Action] {
        releaseSlot(lease.workerID, tokensPerSec: nil)
        if workerLost { workers.removeValue(forKey: lease.workerID) }
        guard var request = requests[lease.requestID] else { return drain(now: now) }
        request.workerID = nil
        var actions: [Action] = []
        if replaceable, !request.replacedWorker {
            request.replacedWorker = true
            request.excludedWorkers.insert(lease.workerID)
            requests[request.id] = request
            if hopeless(request.id, now: now) == nil {
                requeue(request.id)
                return drain(now: now)
            }
        }
        requests[request.id] = nil
        actions.append(.fail(request.id, error))
        return actions + drain(now: now)
    }

    // MARK: Workers and hives

    /// A leased worker finished loading; `url`: where it listens, when the hive said.
    mutating func workerReady(_ workerID: String, url: String? = nil, slotsTotal: Int? = nil, now: Instant) -> [Action] {
        guard workers[workerID] != nil else { return [] }
        workers[workerID]?.state = .ready
        if let url, !url.isEmpty { workers[workerID]?.url = url }
        if let slotsTotal, slotsTotal > 0 { workers[workerID]?.slotsTotal = slotsTotal }
        return drain(now: now)
    }

    /// The worker died, was stopped or cannot be reached: no new work goes to it.
    mutating func workerLost(_ workerID: String, now: Instant) -> [Action] {
        guard workers.removeValue(forKey: workerID) != nil else { return [] }
        return drain(now: now)
    }

    /// What the registry knows of every hive now. Workers of hives it no longer lists are dropped.
    mutating func updateHives(_ snapshot: [Hive], now: Instant) -> [Action] {
        hives = Dictionary(snapshot.map { ($0.name, $0) }, uniquingKeysWith: { _, last in last })
        workers = workers.filter { hives[$0.value.hive] != nil }
        return drain(now: now)
    }

    /// A hive's current worker list (heartbeat or probe). Workers it no longer lists, or lists as
    /// ended, are dropped (one a spawn just answered with is kept for `unlistedWorkerGrace`).
    mutating func workersReported(hive: String, workers reported: [HiveWorkerInfo], now: Instant) -> [Action] {
        for info in reported {
            if [.starting, .loading, .ready].contains(info.state) {
                upsert(info, hive: hive, modelID: nil, now: now)
            } else if workers[info.workerID]?.hive == hive {
                workers.removeValue(forKey: info.workerID)
            }
        }
        let listed = Set(reported.map(\.workerID))
        workers = workers.filter { _, worker in
            worker.hive != hive || listed.contains(worker.workerID) || now - worker.addedAt <= settings.unlistedWorkerGrace
        }
        return drain(now: now)
    }

    /// The hive accepted the spawn (or handed out a worker of the model it already had).
    mutating func spawnSucceeded(_ order: SpawnOrder, worker info: HiveWorkerInfo, now: Instant) -> [Action] {
        if spawning[order.modelID] == order.hive { spawning[order.modelID] = nil }
        upsert(info, hive: order.hive, modelID: order.modelID, now: now)
        return [.refreshCatalog(hive: order.hive, url: order.hiveURL)] + drain(now: now)
    }

    /// The hive refused the spawn: the next attempt for the model goes elsewhere.
    mutating func spawnFailed(_ order: SpawnOrder, error: RbeeError, now: Instant) -> [Action] {
        if spawning[order.modelID] == order.hive { spawning[order.modelID] = nil }
        failedSpawns[order.modelID, default: [:]][order.hive] = SpawnFailure(at: now, error: error)
        return drain(now: now)
    }

    /// Seconds until a queued request is likely to start, from the completion rate of the last minute.
    func retryAfter(now: Instant) -> Int {
        let recent = completions.filter { now - $0 <= settings.completionWindow }
        guard let first = recent.first else { return 5 }
        let window = max(1, (now - first).milliseconds / 1000)
        let rate = Double(recent.count) / window
        return min(120, max(1, Int((Double(queue.count + 1) / max(rate, 0.01)).rounded(.up))))
    }

    // MARK: Rules

    /// Places waiting requests in arrival order; fails those no hive can serve.
    private mutating func drain(now: Instant) -> [Action] {
        var actions: [Action] = []
        var index = 0
        while index < queue.count {
            let id = queue[index]
            if let lease = place(id, now: now, actions: &actions) {
                queue.remove(at: index)
                actions.append(.lease(lease))
            } else if let error = hopeless(id, now: now) {
                queue.remove(at: index)
                requests[id] = nil
                actions.append(.fail(id, error))
            } else {
                index += 1
            }
        }
        return actions
    }

    /// Back into the queue at its arrival place: a request keeps its turn when it moves on.
    private mutating func requeue(_ id: RequestID) {
        let index = queue.firstIndex { $0 > id } ?? queue.endIndex
        queue.insert(id, at: index)
    }

    /// Heard from within `unreachableAfter` of `now`.
    private func isOnline(_ hive: String, now: Instant) -> Bool {
        hives[hive].map { now - $0.lastHeard <= settings.unreachableAfter } ?? false
    }

    private func candidates(for request: Request, now: Instant) -> [Worker] {
        workers.values.filter { worker in
            worker.modelID == request.want.modelID && worker.isServing && !request.excludedWorkers.contains(worker.workerID)
                && !request.excludedHives.contains(worker.hive) && (request.want.hive == nil || worker.hive == request.want.hive)
                && isOnline(worker.hive, now: now)
        }
    }

    /// A worker with room for the request, leased; or nil (after ordering a spawn when one is due).
    private mutating func place(_ id: RequestID, now: Instant, actions: inout [Action]) -> Lease? {
        guard var request = requests[id] else { return nil }
        let candidates = candidates(for: request, now: now)
        let load = { (worker: Worker) in Double(worker.inFlight) / Double(max(worker.slotsTotal, 1)) }
        let free = candidates.filter { $0.state == .ready && $0.inFlight < $0.slotsTotal }
        let chosen =
            free.min { (load($0), $0.workerID) < (load($1), $1.workerID) }
            ?? candidates.filter { $0.inFlight < $0.slotsTotal + settings.workerQueueDepth }.min { a, b in
                (a.inFlight - a.slotsTotal, a.state == .ready ? 0 : 1, a.workerID) < (b.inFlight - b.slotsTotal, b.state == .ready ? 0 : 1, b.workerID)
            }
        if let chosen, let hive = hives[chosen.hive] {
            workers[chosen.workerID]?.inFlight += 1
            request.workerID = chosen.workerID
            requests[id] = request
            return Lease(
                requestID: id, workerID: chosen.workerID, hive: chosen.hive, hiveURL: hive.url, modelID: chosen.modelID, url: chosen.url,
                ready: chosen.state == .ready, queuePosition: max(0, chosen.inFlight + 1 - chosen.slotsTotal))
        }
        let modelID = request.want.modelID
        if spawning[modelID] == nil, let hive = spawnTarget(for: request, busyHives: Set(candidates.map(\.hive)), now: now) {
            spawning[modelID] = hive.name
            actions.append(
                .spawn(
                    SpawnOrder(
                        modelID: modelID, hive: hive.name, hiveURL: hive.url,
                        reference: hive.models.contains(modelID) ? modelID : request.want.modelRef, parallel: settings.workerParallel,
                        correlationID: request.want.correlationID, deadline: request.want.deadline)))
        }
        return nil
    }

    /// The hive a new worker for the request should start on.
    private func spawnTarget(for request: Request, busyHives: Set<String>, now: Instant) -> Hive? {
        let want = request.want
        let recentFailures = (failedSpawns[want.modelID] ?? [:]).filter { now - $0.value.at < settings.spawnFailureMemory }
        let serving = workers.values.filter(\.isServing)
        let hasWorker = Set(serving.filter { $0.modelID == want.modelID }.map(\.hive))
        let options = hives.values.filter { hive in
            isOnline(hive.name, now: now) && (want.hive == nil || hive.name == want.hive) && !request.excludedHives.contains(hive.name)
                && recentFailures[hive.name] == nil && !hasWorker.contains(hive.name) && !busyHives.contains(hive.name)
                && (want.fetchable || hive.models.contains(want.modelID))
        }
        let size = hives.values.lazy.compactMap { $0.modelSizes[want.modelID] }.first ?? 0
        func rank(_ hive: Hive) -> (Int, Int, Int, String) {
            let has = hive.models.contains(want.modelID) ? 0 : 1
            let fits = (hive.ramAvailableBytes ?? Int.max) >= Int(Double(size) * settings.memoryHeadroom) ? 0 : 1
            return (has, fits, serving.filter { $0.hive == hive.name }.count, hive.name)
        }
        return options.min { rank($0) < rank($1) }
    }

    /// Why the request can never be placed now, or nil while there is hope (a worker of the model,
    /// a spawn under way, or a hive that could start one).
    private func hopeless(_ id: RequestID, now: Instant) -> RbeeError? {
        guard let request = requests[id] else { return nil }
        let want = request.want
        if !candidates(for: request, now: now).isEmpty || spawning[want.modelID] != nil { return nil }
        if spawnTarget(for: request, busyHives: [], now: now) != nil { return nil }
        if let failure = failedSpawns[want.modelID]?.values.max(by: { $0.at < $1.at }) { return failure.error }
        if let name = want.hive {
            guard let hive = hives[name] else {
                return RbeeError(.hiveNotFound, "no hive named \(name) is registered", details: ["hive": .string(name)])
            }
            guard isOnline(hive.name, now: now) else {
                return RbeeError(.hiveUnreachable, "hive \(name) is unreachable", details: ["hive": .string(name)], retryAfter: 10)
            }
        }
        let online = hives.values.filter { isOnline($0.name, now: now) }.map(\.name).sorted()
        if online.isEmpty { return RbeeError(.hiveUnreachable, "no hive is online", retryAfter: 10) }
        return RbeeError(
            .modelNotFound, "no hive has the model \(want.modelRef)",
            details: ["model": .string(want.modelRef), "hives": .array(online.map { .string($0) })])
    }

    private func queueFull(now: Instant) -> RbeeError {
        RbeeError(
            .queueFull, "\(queue.count) requests are already waiting; try again later",
            details: ["queued": .number(Double(queue.count)), "max_queue": .number(Double(settings.maxQueue))], retryAfter: retryAfter(now: now))
    }

    private mutating func releaseSlot(_ workerID: String, tokensPerSec: Double?) {
        guard var worker = workers[workerID] else { return }
        worker.inFlight = max(0, worker.inFlight - 1)
        if let tokensPerSec, tokensPerSec > 0 {
            worker.tokensPerSec = worker.tokensPerSec.map { $0 * 0.7 + tokensPerSec * 0.3 } ?? tokensPerSec
        }
        workers[workerID] = worker
    }

    private mutating func upsert(_ info: HiveWorkerInfo, hive: String, modelID: String?, now: Instant) {
        var worker =
            workers[info.workerID]
            ?? Worker(
                workerID: info.workerID, hive: hive, modelID: modelID ?? info.modelID, url: info.url, state: info.state, pid: info.pid,
                slotsTotal: 0, addedAt: now)
        // A worker the queen saw become ready does not go back to loading on a late report.
        if !(worker.state == .ready && [.starting, .loading].contains(info.state)) { worker.state = info.state }
        worker.pid = info.pid ?? worker.pid
        worker.slotsTotal = info.slotsTotal > 0 ? info.slotsTotal : max(worker.slotsTotal, settings.workerParallel ?? settings.defaultSlots)
        worker.slotsBusy = info.slotsBusy
        worker.queueDepth = info.queueDepth
        worker.device = info.device ?? worker.device
        worker.chatTemplate = info.chatTemplate ?? worker.chatTemplate
        if !info.url.isEmpty { worker.url = info.url }
        workers[info.workerID] = worker
    }

    private mutating func trimCompletions(now: Instant) {
        while let first = completions.first, now - first > settings.completionWindow { completions.removeFirst() }
    }
}
