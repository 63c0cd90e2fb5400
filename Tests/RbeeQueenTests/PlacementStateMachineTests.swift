import RbeeAPI
import Testing

@testable import RbeeQueen

/// The queen's placement rules (README "Run a queen"), each as events into the state machine and
/// the actions it answers with: no sockets, no sleeps, the clock an input.
@Suite struct PlacementStateMachineTests {
    typealias Machine = PlacementStateMachine

    /// A machine with hives and workers, and a clock that only moves when a test says so.
    struct Cluster {
        var machine: Machine
        var now = ContinuousClock.now
        var hives: [Machine.Hive] = []

        init(_ configure: (inout Machine.Settings) -> Void = { _ in }) {
            var settings = Machine.Settings()
            // Hives stay online while a test moves the clock, unless it says otherwise.
            settings.unreachableAfter = .seconds(3600)
            configure(&settings)
            machine = Machine(settings: settings)
        }

        mutating func hive(_ name: String, models: [String: Int] = [:], ram: Int? = nil, online: Bool = true) {
            hives.removeAll { $0.name == name }
            hives.append(
                Machine.Hive(
                    name: name, url: "http://\(name):7835", lastHeard: online ? now : now - machine.settings.unreachableAfter * 2, models: Set(models.keys),
                    modelSizes: models, ramAvailableBytes: ram))
            _ = machine.updateHives(hives, now: now)
        }

        mutating func workers(on hive: String, _ workers: [(id: String, state: HiveWorkerState, slots: Int)], model: String = "m") -> [Machine.Action] {
            machine.workersReported(
                hive: hive,
                workers: workers.map { Self.info($0.id, model: model, state: $0.state, slots: $0.slots) }, now: now)
        }

        static func info(_ id: String, model: String = "m", state: HiveWorkerState, slots: Int) -> HiveWorkerInfo {
            HiveWorkerInfo(
                workerID: id, modelID: model, url: "http://\(id):7900", progressURL: "", pid: 1, state: state, slotsTotal: slots, slotsBusy: 0,
                queueDepth: 0, lastHeartbeatSAgo: nil, restarts: 0, exit: nil, error: nil, stderrTail: nil)
        }

        mutating func admit(_ model: String = "m", fetchable: Bool = false, hive: String? = nil) -> (Machine.Admission, [Machine.Action]) {
            machine.admit(Machine.Want(modelID: model, modelRef: fetchable ? "hf:org/repo:\(model).gguf" : model, fetchable: fetchable, hive: hive), now: now)
        }

        mutating func advance(_ duration: Duration) { now += duration }
    }

    static func lease(_ admission: Machine.Admission) -> Machine.Lease? {
        if case .placed(let lease) = admission { lease } else { nil }
    }

    static func leases(_ actions: [Machine.Action]) -> [Machine.Lease] {
        actions.compactMap { if case .lease(let lease) = $0 { lease } else { nil } }
    }

    static func spawns(_ actions: [Machine.Action]) -> [Machine.SpawnOrder] {
        actions.compactMap { if case .spawn(let order) = $0 { order } else { nil } }
    }

    static func failures(_ actions: [Machine.Action]) -> [Machine.RequestID: RbeeError] {
        Dictionary(uniqueKeysWithValues: actions.compactMap { if case .fail(let id, let error) = $0 { (id, error) } else { nil } })
    }

    static func refusal(_ admission: Machine.Admission) -> RbeeError? {
        if case .refused(let error) = admission { error } else { nil }
    }

    static func queued(_ admission: Machine.Admission) -> (id: Machine.RequestID, position: Int)? {
        if case .queued(let id, let position) = admission { (id, position) } else { nil }
    }

    // MARK: Warm workers

    @Test func aReadyWorkerWithAFreeSlotIsLeasedTheLeastLoadedFirst() throws {
        var cluster = Cluster()
        cluster.hive("a", models: ["m": 100])
        _ = cluster.workers(on: "a", [("w1", .ready, 2), ("w2", .ready, 2)])
        let first = try #require(Self.lease(cluster.admit().0))
        let second = try #require(Self.lease(cluster.admit().0))
        #expect([first.workerID, second.workerID].sorted() == ["w1", "w2"], "the second goes to the idle worker")
        #expect(first.ready && second.ready)
        let third = try #require(Self.lease(cluster.admit().0))
        let fourth = try #require(Self.lease(cluster.admit().0))
        #expect([third.workerID, fourth.workerID].sorted() == ["w1", "w2"])
    }

    @Test func withEverySlotBusyTheShortestQueueBelowTheDepthIsUsedThenRequestsWait() throws {
        var cluster = Cluster { $0.workerQueueDepth = 1 }
        cluster.hive("a", models: ["m": 100])
        _ = cluster.workers(on: "a", [("w1", .ready, 1)])
        let running = try #require(Self.lease(cluster.admit().0))
        #expect(running.workerID == "w1" && running.queuePosition == 0)
        let stacked = try #require(Self.lease(cluster.admit().0))
        #expect(stacked.workerID == "w1" && stacked.queuePosition == 1, "one more stacks on the worker's own queue, first in its line")
        let (admission, actions) = cluster.admit()
        #expect(Self.queued(admission)?.position == 1)
        #expect(Self.spawns(actions).isEmpty, "the only hive already has a worker of the model")
    }

    @Test func aBusyModelStartsASecondWorkerOnAnotherHive() throws {
        var cluster = Cluster { $0.workerQueueDepth = 0 }
        cluster.hive("a", models: ["m": 100])
        cluster.hive("b", models: ["m": 100])
        _ = cluster.workers(on: "a", [("w1", .ready, 1)])
        #expect(Self.lease(cluster.admit().0)?.workerID == "w1")
        let (admission, actions) = cluster.admit()
        #expect(Self.queued(admission) != nil)
        #expect(Self.spawns(actions).map(\.hive) == ["b"])
    }

    // MARK: Cold starts

    @Test func aColdStartGoesToTheBestHive() throws {
        // The model in its catalog beats free memory; free memory beats fewer workers; then the name.
        var cluster = Cluster()
        cluster.hive("a", ram: 1 << 40)
        cluster.hive("b", models: ["m": 1000], ram: 10)
        cluster.hive("c", models: ["m": 1000], ram: 1 << 40)
        var (_, actions) = cluster.admit(fetchable: true)
        #expect(Self.spawns(actions) == [Machine.SpawnOrder(modelID: "m", hive: "c", hiveURL: "http://c:7835", reference: "m", parallel: nil)])

        // No online hive has n: its size comes from the catalog of one that is offline.
        var fetch = Cluster { $0.workerParallel = 2 }
        fetch.hive("away", models: ["n": 1000], online: false)
        fetch.hive("small", ram: 100)
        fetch.hive("busy", ram: 1 << 40)
        _ = fetch.workers(on: "busy", [("x", .ready, 4)], model: "other")
        (_, actions) = fetch.admit("n", fetchable: true)
        var order = try #require(Self.spawns(actions).first)
        #expect(order.hive == "busy", "fitting in RAM beats having fewer workers")
        #expect(order.reference == "hf:org/repo:n.gguf", "a hive without the model gets the client's reference")
        #expect(order.parallel == 2)
        var idle = Cluster()
        idle.hive("away", models: ["n": 1000], online: false)
        idle.hive("busy", ram: 1 << 40)
        idle.hive("idle", ram: 1 << 40)
        _ = idle.workers(on: "busy", [("x", .ready, 4)], model: "other")
        (_, actions) = idle.admit("n", fetchable: true)
        order = try #require(Self.spawns(actions).first)
        #expect(order.hive == "idle", "among hives it fits, the one with fewest workers")
    }

    @Test func concurrentColdRequestsShareOneSpawnAndAreLeasedWhileItLoads() throws {
        var cluster = Cluster()
        cluster.hive("a", models: ["m": 100])
        var spawns: [Machine.SpawnOrder] = []
        var ids: [Machine.RequestID] = []
        for _ in 0..<3 {
            let (admission, actions) = cluster.admit()
            spawns += Self.spawns(actions)
            ids.append(try #require(Self.queued(admission)).id)
        }
        #expect(spawns.count == 1, "one spawn per model at a time")
        let actions = cluster.machine.spawnSucceeded(spawns[0], worker: Cluster.info("w1", state: .loading, slots: 4), now: cluster.now)
        let leases = Self.leases(actions)
        #expect(leases.map(\.requestID) == ids, "in arrival order")
        #expect(leases.allSatisfy { $0.workerID == "w1" && !$0.ready })
        #expect(actions.contains(.refreshCatalog(hive: "a", url: "http://a:7835")))
        _ = cluster.machine.workerReady("w1", now: cluster.now)
        #expect(Self.lease(cluster.admit().0)?.ready == true)
    }

    @Test func aFailedColdStartMovesTheRequestToTheNextHive() throws {
        var cluster = Cluster()
        cluster.hive("a", models: ["m": 100])
        cluster.hive("b", models: ["m": 100])
        let (admission, actions) = cluster.admit()
        let request = try #require(Self.queued(admission)).id
        let first = try #require(Self.spawns(actions).first)
        #expect(first.hive == "a")
        let lease = try #require(
            Self.leases(cluster.machine.spawnSucceeded(first, worker: Cluster.info("wa", state: .loading, slots: 4), now: cluster.now)).first)
        let failure = RbeeError(.loadingTimeout, "too slow", details: ["hive": "a"])
        let next = cluster.machine.coldStartFailed(lease, error: failure, now: cluster.now)
        let second = try #require(Self.spawns(next).first)
        #expect(second.hive == "b")
        #expect(Self.failures(next).isEmpty)
        // A new request for the model avoids hive a for a while, and shares b's spawn.
        let (later, laterActions) = cluster.admit()
        #expect(Self.queued(later) != nil && Self.spawns(laterActions).isEmpty)
        let onB = Self.leases(cluster.machine.spawnSucceeded(second, worker: Cluster.info("wb", state: .loading, slots: 4), now: cluster.now))
        #expect(onB.map(\.requestID).first == request && onB.allSatisfy { $0.workerID == "wb" })
        // Failing on b too: no hive is left, the request fails with b's error.
        cluster.advance(.seconds(1))
        let last = cluster.machine.coldStartFailed(onB[0], error: RbeeError(.modelLoadFailed, "corrupt"), now: cluster.now)
        #expect(Self.failures(last)[request]?.code == .modelLoadFailed)
    }

    @Test func aRefusedSpawnFailsItsWaitersWithTheHivesErrorAndIsRememberedForAWhile() throws {
        var cluster = Cluster()
        cluster.hive("a", models: ["m": 100])
        let (admission, actions) = cluster.admit()
        let request = try #require(Self.queued(admission)).id
        let order = try #require(Self.spawns(actions).first)
        let refusal = RbeeError(
            .insufficientRAM, "model m needs about 120 MiB; 10 MiB are available", details: ["bytes_needed": 125_829_120, "bytes_available": 10_485_760])
        let failed = cluster.machine.spawnFailed(order, error: refusal, now: cluster.now)
        #expect(Self.failures(failed)[request] == refusal, "the hive's code and details, unchanged")
        #expect(Self.refusal(cluster.admit().0) == refusal, "within 30 s the hive is not tried again")
        cluster.advance(.seconds(31))
        #expect(Self.spawns(cluster.admit().1).map(\.hive) == ["a"])
    }

    // MARK: The queue

    @Test func waitersAreServedInArrivalOrder() throws {
        var cluster = Cluster { $0.workerQueueDepth = 0 }
        cluster.hive("a", models: ["m": 100])
        _ = cluster.workers(on: "a", [("w1", .ready, 1)])
        let running = try #require(Self.lease(cluster.admit().0))
        let second = try #require(Self.queued(cluster.admit().0))
        let third = try #require(Self.queued(cluster.admit().0))
        #expect((second.position, third.position) == (1, 2))
        let next = Self.leases(cluster.machine.finished(running, tokensPerSec: 50, now: cluster.now))
        #expect(next.map(\.requestID) == [second.id])
        #expect(cluster.machine.workers["w1"]?.tokensPerSec == 50)
    }

    @Test func admissionIsBoundedWithARetryAfterFromTheCompletionRate() throws {
        var cluster = Cluster {
            $0.workerQueueDepth = 0
            $0.maxQueue = 2
        }
        cluster.hive("a", models: ["m": 100])
        _ = cluster.workers(on: "a", [("w1", .ready, 1)])
        var running = try #require(Self.lease(cluster.admit().0))
        _ = cluster.admit()
        _ = cluster.admit()
        let full = try #require(Self.refusal(cluster.admit().0))
        #expect(full.code == .queueFull && full.retryAfter == 5, "no completion yet: 5 s")
        // 10 completions over the last 10 s: one a second, 2 waiting → the third in 3 s.
        var fresh = Cluster {
            $0.workerQueueDepth = 0
            $0.maxQueue = 2
        }
        fresh.hive("a", models: ["m": 100])
        _ = fresh.workers(on: "a", [("w1", .ready, 1)])
        running = try #require(Self.lease(fresh.admit().0))
        for _ in 0..<10 {
            fresh.advance(.seconds(1))
            running = try #require(Self.leases(fresh.machine.finished(running, tokensPerSec: nil, now: fresh.now)).first ?? Self.lease(fresh.admit().0))
        }
        _ = fresh.admit()
        _ = fresh.admit()
        let refused = try #require(Self.refusal(fresh.admit().0))
        #expect(refused.retryAfter == 3, "\(String(describing: refused.retryAfter))")
        #expect(refused.details["max_queue"] == 2)
    }

    @Test func cancellingGivesThePlaceInTheQueueOrTheSlotBack() throws {
        var cluster = Cluster {
            $0.workerQueueDepth = 0
            $0.maxQueue = 1
        }
        cluster.hive("a", models: ["m": 100])
        _ = cluster.workers(on: "a", [("w1", .ready, 1)])
        let running = try #require(Self.lease(cluster.admit().0))
        let waiting = try #require(Self.queued(cluster.admit().0))
        #expect(Self.refusal(cluster.admit().0)?.code == .queueFull)
        _ = cluster.machine.cancel(waiting.id, now: cluster.now)
        let replacement = try #require(Self.queued(cluster.admit().0))
        let next = Self.leases(cluster.machine.cancel(running.requestID, now: cluster.now))
        #expect(next.map(\.requestID) == [replacement.id], "the cancelled request's slot goes to the next waiter")
        #expect(cluster.machine.cancel(running.requestID, now: cluster.now).isEmpty, "cancelling twice changes nothing")
        #expect(cluster.machine.requestCount == 1)
    }

    // MARK: Failing workers

    @Test func aWorkerThatFailsBeforeTheFirstTokenIsReplacedOnce() throws {
        var cluster = Cluster()
        cluster.hive("a", models: ["m": 100])
        _ = cluster.workers(on: "a", [("w1", .ready, 2), ("w2", .ready, 2)])
        let first = try #require(Self.lease(cluster.admit().0))
        let crash = RbeeError(.workerCrashed, "the connection broke")
        let retried = Self.leases(cluster.machine.workerFailed(first, error: crash, replaceable: true, workerLost: true, now: cluster.now))
        let second = try #require(retried.first)
        #expect(second.requestID == first.requestID && second.workerID != first.workerID)
        #expect(cluster.machine.workers[first.workerID] == nil, "a lost worker gets no more work")
        let final = cluster.machine.workerFailed(second, error: crash, replaceable: true, workerLost: false, now: cluster.now)
        #expect(Self.failures(final)[first.requestID] == crash, "only one replacement")

        let other = try #require(Self.lease(cluster.admit().0))
        let midStream = RbeeError(.workerCrashed, "broke after 3 tokens")
        #expect(Self.failures(cluster.machine.workerFailed(other, error: midStream, replaceable: false, workerLost: true, now: cluster.now))[other.requestID] == midStream)
    }

    // MARK: Hopeless requests

    @Test func requestsNoHiveCanServeFailAtOnceWithTheReason() throws {
        var cluster = Cluster()
        #expect(Self.refusal(cluster.admit().0)?.code == .hiveUnreachable, "no hive at all")
        cluster.hive("a", models: ["m": 100])
        #expect(Self.refusal(cluster.admit("elsewhere").0)?.code == .modelNotFound, "a catalog id no hive has")
        #expect(Self.refusal(cluster.admit(hive: "nowhere").0)?.code == .hiveNotFound)
        cluster.hive("b", online: false)
        #expect(Self.refusal(cluster.admit(fetchable: true, hive: "b").0)?.code == .hiveUnreachable)
    }

    @Test func workersOfAnUnreachableHiveGetNoWork() throws {
        var cluster = Cluster()
        cluster.hive("a", models: ["m": 100])
        cluster.hive("b", models: ["m": 100])
        _ = cluster.workers(on: "a", [("w1", .ready, 4)])
        cluster.hive("a", models: ["m": 100], online: false)
        let (admission, actions) = cluster.admit()
        #expect(Self.lease(admission) == nil)
        #expect(Self.spawns(actions).map(\.hive) == ["b"])
    }

    @Test func aHiveSilentPastTheLimitIsUnreachableAtOnceWithoutWaitingForASweep() throws {
        var cluster = Cluster { $0.unreachableAfter = .seconds(3) }
        cluster.hive("a", models: ["m": 100])
        cluster.hive("b", models: ["m": 100])
        _ = cluster.workers(on: "a", [("w1", .ready, 4)])
        #expect(Self.lease(cluster.admit().0)?.workerID == "w1")
        // b keeps beating; a falls silent. Nothing tells the machine: the clock alone decides.
        cluster.advance(.seconds(2))
        cluster.hive("b", models: ["m": 100])
        cluster.advance(.milliseconds(1500))
        let named = cluster.admit(hive: "a")
        let refusal = try #require(Self.refusal(named.0))
        #expect(refusal.code == .hiveUnreachable && refusal.retryAfter ?? 0 >= 1, "\(refusal)")
        let (admission, actions) = cluster.admit()
        #expect(Self.lease(admission) == nil, "no new work for the silent hive's worker")
        #expect(Self.spawns(actions).map(\.hive) == ["b"], "the model starts on the other hive")
    }

    @Test func hiveReportsKeepTheWorkerTableCurrent() throws {
        var cluster = Cluster()
        cluster.hive("a", models: ["m": 100])
        _ = cluster.workers(on: "a", [("w1", .ready, 4)])
        _ = cluster.workers(on: "a", [("w1", .loading, 4)])
        #expect(cluster.machine.workers["w1"]?.state == .ready, "a late report does not turn a ready worker back to loading")
        _ = cluster.workers(on: "a", [("w1", .failed, 4)])
        #expect(cluster.machine.workers["w1"] == nil)
        // A worker a spawn answered with stays a few seconds before the hive lists it.
        let order = try #require(Self.spawns(cluster.admit().1).first)
        _ = cluster.machine.spawnSucceeded(order, worker: Cluster.info("w2", state: .loading, slots: 4), now: cluster.now)
        _ = cluster.workers(on: "a", [])
        #expect(cluster.machine.workers["w2"] != nil)
        cluster.advance(.seconds(6))
        _ = cluster.workers(on: "a", [])
        #expect(cluster.machine.workers["w2"] == nil)
    }
}
