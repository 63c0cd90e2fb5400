import RbeeAPI
import RbeeTestSupport
import Testing

@testable import RbeeHive

/// A worker's life as its hive decides it, event by event; the clock is an input.
@Suite struct WorkerLifecycleTests {
    var now = ContinuousClock.now
    let timers = WorkerLifecycle.Timers(
        heartbeatInterval: .seconds(1), healthProbeInterval: .seconds(2), loadingTimeout: .seconds(60), idleTimeout: .seconds(30),
        endedRetention: .seconds(60))

    func worker() -> WorkerLifecycle {
        WorkerLifecycle(workerID: "w1", modelID: "m", progressURL: "/download", timers: timers, now: now)
    }

    /// A worker that has loaded and reported ready.
    mutating func readyWorker() -> WorkerLifecycle {
        var worker = worker()
        let arrived = worker.modelArrived(path: "/m.gguf")
        #expect(arrived == [.launch(modelPath: "/m.gguf")])
        worker.launched(pid: 42, progressURL: "http://127.0.0.1:7900/v1/loading/progress", now: now)
        let readyActions = worker.reportedReady(slotsTotal: 2, failure: nil, now: now)
        #expect(readyActions.isEmpty)
        return worker
    }

    @Test mutating func aWorkerStartsLoadsAndServesAndBusyIsStillReadyOnTheWire() {
        var worker = worker()
        #expect(worker.phase == .starting && worker.info(now: now).state == .starting)
        _ = worker.modelArrived(path: "/m.gguf")
        worker.launched(pid: 42, progressURL: "http://127.0.0.1:7835/v1/workers/w1/progress", now: now)
        #expect(worker.phase == .loading && worker.info(now: now).pid == 42)
        #expect(worker.url.isEmpty, "the port is the worker's to pick")
        worker.listening(url: "http://127.0.0.1:41234")
        #expect(worker.info(now: now).url == "http://127.0.0.1:41234")
        _ = worker.reportedReady(slotsTotal: 2, failure: nil, now: now)
        #expect(worker.phase == .ready)
        let accepted = worker.heartbeat(slotsTotal: 2, slotsBusy: 2, queueDepth: 3, jobsAccepted: 5, now: now)
        #expect(accepted)
        #expect(worker.phase == .busy)
        let info = worker.info(now: now)
        #expect(info.state == .ready && info.slotsBusy == 2 && info.queueDepth == 3)
        _ = worker.heartbeat(slotsTotal: 2, slotsBusy: 1, queueDepth: 0, jobsAccepted: 6, now: now)
        #expect(worker.phase == .ready)
    }

    @Test mutating func anUnaskedExitIsACrashWithItsStatus() {
        var worker = readyWorker()
        let afterCrash = worker.exited(status: "signal 9", stderrTail: "boom", now: now)
        #expect(afterCrash.isEmpty, "a crashed worker stays listed for a while")
        #expect(worker.info(now: now).state == .failed)
        #expect(worker.info(now: now).error?.code == .workerCrashed)
        #expect(worker.info(now: now).exit == "signal 9" && worker.info(now: now).stderrTail == "boom")
        let acceptedAfterCrash = worker.heartbeat(slotsTotal: 2, slotsBusy: 0, queueDepth: 0, jobsAccepted: 6, now: now)
        #expect(!acceptedAfterCrash, "an ended worker's heartbeat is refused")
        now += .seconds(59)
        let kept = worker.tick(now: now)
        #expect(kept.isEmpty)
        now += .seconds(2)
        let gone = worker.tick(now: now)
        #expect(gone == [.forget], "forgotten a minute after it ended")
    }

    @Test mutating func silenceIdlenessAndFailedProbesStopAWorkerAndItIsForgottenOnceItEnded() {
        var silent = readyWorker()
        now += .seconds(2)
        let probeDue = silent.tick(now: now)
        #expect(probeDue == [.probe], "a probe is due every 2 s")
        now += .milliseconds(1100)
        let silence = silent.tick(now: now)
        #expect(silence == [.stop(reason: .init(.silent, "no heartbeat for 3 s"))])
        let again = silent.tick(now: now)
        #expect(again.isEmpty, "a stop is asked for once")
        let afterExit = silent.exited(status: "exit 0", stderrTail: nil, now: now)
        #expect(afterExit == [.forget])

        var idle = readyWorker()
        for _ in 0..<31 {
            now += .seconds(1)
            _ = idle.heartbeat(slotsTotal: 2, slotsBusy: 0, queueDepth: 0, jobsAccepted: 0, now: now)
            if case .stopping = idle.phase { break }
            _ = idle.tick(now: now)
        }
        #expect(idle.phase == .stopping(reason: .init(.idle, "idle for 30 s")))

        var unhealthy = readyWorker()
        let firstFailure = unhealthy.probed(healthy: false, now: now)
        #expect(firstFailure.isEmpty)
        let afterHealthy = unhealthy.probed(healthy: true, now: now)
        #expect(afterHealthy.isEmpty, "a healthy answer resets the count")
        _ = unhealthy.probed(healthy: false, now: now)
        _ = unhealthy.probed(healthy: false, now: now)
        let thirdFailure = unhealthy.probed(healthy: false, now: now)
        #expect(thirdFailure == [.stop(reason: .init(.unhealthy, "3 failed health probes"))])
    }

    @Test mutating func aFailedLoadOrTheLoadingTimeoutShowsAsTheFailureWhileTheProcessStops() {
        var broken = worker()
        _ = broken.modelArrived(path: "/m.gguf")
        broken.launched(pid: 42, progressURL: "", now: now)
        let failure = RbeeError(.modelLoadFailed, "not a GGUF file")
        let afterFailedLoad = broken.reportedReady(slotsTotal: 0, failure: failure, now: now)
        #expect(afterFailedLoad == [.stop(reason: .init(.loadFailed, "failed to load"))])
        #expect(broken.info(now: now).state == .failed && broken.info(now: now).error == failure, "at once, before the process has ended")
        let afterExit = broken.exited(status: "exit 0", stderrTail: nil, now: now)
        #expect(afterExit.isEmpty, "kept, so whoever waits for it sees why")
        #expect(broken.phase == .failed(failure))

        var slow = worker()
        _ = slow.modelArrived(path: "/m.gguf")
        slow.launched(pid: 43, progressURL: "", now: now)
        now += .seconds(61)
        let timeout = slow.tick(now: now)
        #expect(timeout == [.stop(reason: .init(.loadingTimeout, "loading timeout"))])
        #expect(slow.info(now: now).error?.code == .loadingTimeout)
    }

    @Test mutating func aWorkerStoppedWhileItsModelDownloadsNeverStarts() {
        var waiting = worker()
        let result16 = waiting.stopRequested(reason: .init(.requested, "DELETE"), forget: true, now: now)
        #expect(result16 == [.forget], "no process to stop")
        let result17 = waiting.modelArrived(path: "/m.gguf")
        #expect(result17.isEmpty, "the download finishing later starts nothing")
        var cancelled = worker()
        let shutdown = cancelled.stopRequested(reason: .init(.shutdown, "hive shutdown"), forget: false, failure: RbeeError(.cancelled, "shut down"), now: now)
        #expect(shutdown.isEmpty && cancelled.info(now: now).error?.code == .cancelled, "a spawn under way when the hive stops ends CANCELLED")
        var failing = worker()
        failing.modelFailed(RbeeError(.checksumMismatch, "corrupt"), now: now)
        #expect(failing.info(now: now).error?.code == .checksumMismatch)
    }

    @Test mutating func silenceDuringAGapInTheHivesOwnClockDoesNotCountAndTheWorkerIsProbedFirst() {
        var serving = readyWorker()
        now += .milliseconds(500)
        _ = serving.tick(now: now)
        // The hive was suspended for 20 s: its next tick comes that late.
        now += .seconds(20)
        let resumed = serving.clockGap(.seconds(20), now: now)
        #expect(resumed == [.probe], "probed before it is judged")
        #expect(serving.phase == .ready)
        let kept = serving.probed(healthy: true, now: now)
        #expect(kept.isEmpty)
        // Its silence counts again: the 0.5 s before the gap, plus what follows it.
        now += .milliseconds(2400)
        #expect(serving.tick(now: now).allSatisfy { $0 == .probe })
        now += .milliseconds(200)
        let silence = serving.tick(now: now)
        #expect(silence == [.stop(reason: .init(.silent, "no heartbeat for 3 s"))], "3.1 s of silence once the gap is taken out")

        // A gap never forgives a worker more silence than it had, nor a frozen one its probes.
        var frozen = readyWorker()
        now += .seconds(30)
        #expect(frozen.clockGap(.seconds(60), now: now) == [.probe])
        #expect(frozen.tick(now: now).isEmpty, "no silence judged at the end of the gap")
        for _ in 0..<2 { #expect(frozen.probed(healthy: false, now: now).isEmpty) }
        #expect(frozen.probed(healthy: false, now: now) == [.stop(reason: .init(.unhealthy, "3 failed health probes"))])

        // A loading worker's timeout does not run while the hive is stopped either.
        var loading = worker()
        _ = loading.modelArrived(path: "/m.gguf")
        loading.launched(pid: 7, progressURL: "", now: now)
        now += .seconds(59)
        #expect(loading.clockGap(.seconds(50), now: now).isEmpty)
        now += .seconds(40)
        #expect(loading.tick(now: now).isEmpty, "9 s of its 60 s loading time counted, then 40 s")
        now += .seconds(12)
        #expect(loading.tick(now: now) == [.stop(reason: .init(.loadingTimeout, "loading timeout"))])
    }
}
