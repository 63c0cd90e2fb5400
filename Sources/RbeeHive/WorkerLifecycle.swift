import RbeeAPI

/// One worker's life as its hive sees it, as a value: events in (its model arrived, its process
/// started, it reported, a probe answered, time passed, it exited), actions out (launch it, stop
/// it, probe it, forget it). `WorkerSupervisor` carries the actions out; `HiveWorkerInfo` is a
/// view of this for the wire.
///
/// starting (its model downloading) → loading → ready ⇄ busy → stopping → stopped | failed.
/// A worker that exits without being asked to has crashed; one silent for 3 heartbeat intervals,
/// failing 3 health probes in a row, still loading after the loading timeout, or idle (no request
/// accepted and none running) for the idle timeout is stopped. An ended worker stays listed for
/// `endedRetention` (so whoever stopped it, or waits for it, sees how it ended), unless it is to
/// be forgotten at once.
struct WorkerLifecycle: Sendable {
    typealias Instant = ContinuousClock.Instant

    /// Why the hive stops a worker: a kind from a short list (a metric label) and the words for
    /// the log.
    struct StopReason: Sendable, Equatable, CustomStringConvertible {
        enum Kind: String, Sendable {
            case requested, shutdown, idle, unhealthy, silent
            case loadingTimeout = "loading_timeout"
            case loadFailed = "load_failed"
        }
        let kind: Kind
        let text: String

        init(_ kind: Kind, _ text: String) {
            self.kind = kind
            self.text = text
        }

        var description: String { text }
    }

    enum Phase: Sendable, Equatable {
        /// Waiting for its model (a download).
        case starting
        /// The process runs and loads the model.
        case loading
        /// Serving, with a free slot.
        case ready
        /// Serving, every slot busy.
        case busy
        /// Asked to stop (SIGTERM, then SIGKILL after the grace period).
        case stopping(reason: StopReason)
        /// Ended as asked.
        case stopped(reason: StopReason)
        case failed(RbeeError)

        var isEnded: Bool {
            switch self {
            case .stopped, .failed: true
            default: false
            }
        }
    }

    enum Action: Sendable, Equatable {
        case launch(modelPath: String)
        /// Stop the process; it reports its exit.
        case stop(reason: StopReason)
        case probe
        /// Remove the record: nothing more will be said of it.
        case forget
    }

    struct Timers: Sendable, Equatable {
        var heartbeatInterval: Duration = .seconds(15)
        var healthProbeInterval: Duration = .seconds(10)
        var loadingTimeout: Duration = .seconds(600)
        var idleTimeout: Duration = .seconds(300)
        var endedRetention: Duration = .seconds(60)
    }

    let workerID: String
    let modelID: String
    let device: String
    /// Where it listens; known once it says so (it binds a port the system picks).
    private(set) var url = ""
    let timers: Timers
    private(set) var phase: Phase = .starting
    private(set) var pid: Int32?
    private(set) var slotsTotal = 0
    private(set) var slotsBusy = 0
    private(set) var queueDepth = 0
    /// Where the worker's loading progress is followed (the download's, while starting).
    var progressURL: String
    private(set) var exit: String?
    private(set) var stderrTail: String?
    /// The loaded model's chat template, as the worker reported it when ready.
    var chatTemplate: ChatTemplateInfo?
    private(set) var lastHeartbeat: Instant?
    private var startedAt: Instant
    private var endedAt: Instant?
    private var lastActivity: Instant
    private var lastProbe: Instant
    private var jobsAccepted = 0
    private var probeFailures = 0
    /// Whether the process runs (launched, not yet exited).
    private var running = false
    /// Forget the record once the process has exited.
    private var forgetOnExit = false
    /// Why the worker is being stopped when that is a failure (loading timeout, failed load).
    private var stopFailure: RbeeError?

    init(workerID: String, modelID: String, device: String = "cpu", progressURL: String, timers: Timers, now: Instant) {
        self.workerID = workerID
        self.modelID = modelID
        self.device = device
        self.progressURL = progressURL
        self.timers = timers
        startedAt = now
        lastActivity = now
        lastProbe = now
    }

    /// A worker that may serve, or soon will.
    var isServing: Bool {
        switch phase {
        case .starting, .loading, .ready, .busy: true
        default: false
        }
    }

    // MARK: Events

    /// Its model is on disk: start the process, unless it was stopped meanwhile.
    mutating func modelArrived(path: String) -> [Action] {
        guard phase == .starting else { return [] }
        return [.launch(modelPath: path)]
    }

    /// Its model could not be fetched (or the spawn was abandoned).
    mutating func modelFailed(_ error: RbeeError, now: Instant) {
        guard phase == .starting else { return }
        endedAt = now
        phase = .failed(error)
    }

    mutating func launched(pid: Int32, progressURL: String, now: Instant) {
        self.pid = pid
        self.progressURL = progressURL
        running = true
        startedAt = now
        lastActivity = now
        lastProbe = now
        if phase == .starting { phase = .loading }
    }

    /// `POST /v1/workers/listening`: the worker's URL.
    mutating func listening(url: String) {
        self.url = url
    }

    mutating func launchFailed(_ error: RbeeError, now: Instant) {
        running = false
        endedAt = now
        phase = .failed(error)
    }

    /// `POST /v1/workers/ready`: loaded, or failed to load (then its process is stopped; the
    /// record stays, so whoever waits sees why).
    mutating func reportedReady(slotsTotal: Int, failure: RbeeError?, now: Instant) -> [Action] {
        lastHeartbeat = now
        lastActivity = now
        self.slotsTotal = slotsTotal
        if let failure {
            stopFailure = failure
            return stop(reason: StopReason(.loadFailed, "failed to load"), forget: false)
        }
        if phase == .loading || phase == .starting { phase = .ready }
        return []
    }

    /// `POST /v1/workers/heartbeat`; false for a worker that has ended (it then gives up).
    mutating func heartbeat(slotsTotal: Int, slotsBusy: Int, queueDepth: Int, jobsAccepted: Int?, now: Instant) -> Bool {
        guard !phase.isEnded else { return false }
        lastHeartbeat = now
        self.slotsTotal = slotsTotal
        self.slotsBusy = slotsBusy
        self.queueDepth = queueDepth
        let jobs = jobsAccepted ?? self.jobsAccepted
        if jobs != self.jobsAccepted || slotsBusy > 0 || queueDepth > 0 { lastActivity = now }
        self.jobsAccepted = jobs
        switch phase {
        case .ready, .busy: phase = slotsTotal > 0 && slotsBusy >= slotsTotal ? .busy : .ready
        default: break
        }
        return true
    }

    /// A health probe's answer: 3 failures in a row stop the worker.
    mutating func probed(healthy: Bool, now: Instant) -> [Action] {
        lastProbe = now
        probeFailures = healthy ? 0 : probeFailures + 1
        guard probeFailures >= 3, isServing else { return [] }
        return stop(reason: StopReason(.unhealthy, "3 failed health probes"), forget: true)
    }

    /// The hive itself could not run for `gap` (its machine suspended, its process stopped): the
    /// worker's silence, idleness and loading time over that gap were the hive's own, so they do
    /// not count. A serving worker is probed at once, before its silence is judged again.
    mutating func clockGap(_ gap: Duration, now: Instant) -> [Action] {
        guard gap > .zero else { return [] }
        startedAt = min(startedAt + gap, now)
        lastActivity = min(lastActivity + gap, now)
        if let heard = lastHeartbeat { lastHeartbeat = min(heard + gap, now) }
        switch phase {
        case .ready, .busy:
            lastProbe = now
            return [.probe]
        default:
            return []
        }
    }

    /// Time passed: the loading timeout, heartbeat silence, idleness, and probes due.
    mutating func tick(now: Instant) -> [Action] {
        switch phase {
        case .loading where now - startedAt > timers.loadingTimeout:
            stopFailure = RbeeError(
                .loadingTimeout, "the worker did not load its model within \(Int(timers.loadingTimeout.milliseconds / 1000)) s",
                details: ["worker_id": .string(workerID)])
            return stop(reason: StopReason(.loadingTimeout, "loading timeout"), forget: false)
        case .ready, .busy:
            let silent = now - (lastHeartbeat ?? startedAt)
            if silent > timers.heartbeatInterval * 3 {
                return stop(reason: StopReason(.silent, "no heartbeat for \(Int(silent.milliseconds / 1000)) s"), forget: true)
            }
            if now - lastActivity > timers.idleTimeout {
                return stop(reason: StopReason(.idle, "idle for \(Int(timers.idleTimeout.milliseconds / 1000)) s"), forget: true)
            }
            if now - lastProbe >= timers.healthProbeInterval {
                lastProbe = now
                return [.probe]
            }
            return []
        case .stopped, .failed:
            guard !running else { return [] }
            return forgetOnExit || now - (endedAt ?? now) > timers.endedRetention ? [.forget] : []
        default:
            return []
        }
    }

    /// The hive (a `DELETE`, its shutdown) asks the worker to stop. `failure`: what a worker that
    /// never started ends with (`CANCELLED` when the hive shuts down under a spawn).
    mutating func stopRequested(reason: StopReason, forget: Bool, failure: RbeeError? = nil, now: Instant) -> [Action] {
        if phase == .starting, !running, let failure { stopFailure = failure }
        if phase == .starting, !running { endedAt = now }
        return stop(reason: reason, forget: forget)
    }

    /// The process ended: as asked, or it crashed.
    mutating func exited(status: String, stderrTail: String?, now: Instant) -> [Action] {
        running = false
        endedAt = now
        exit = status
        self.stderrTail = stderrTail
        switch phase {
        case .stopping(let reason):
            phase = stopFailure.map { .failed($0) } ?? .stopped(reason: reason)
        case .stopped, .failed:
            break
        default:
            phase = .failed(RbeeError(.workerCrashed, "the worker process ended (\(status))", details: ["worker_id": .string(workerID), "exit": .string(status)]))
        }
        return forgetOnExit ? [.forget] : []
    }

    private mutating func stop(reason: StopReason, forget: Bool) -> [Action] {
        forgetOnExit = forgetOnExit || forget
        switch phase {
        case .stopping:
            return []
        case .stopped, .failed:
            return forgetOnExit && !running ? [.forget] : []
        case .starting where !running:
            // No process yet: it never starts.
            phase = stopFailure.map { .failed($0) } ?? .stopped(reason: reason)
            return forgetOnExit ? [.forget] : []
        default:
            phase = .stopping(reason: reason)
            return [.stop(reason: reason)]
        }
    }

    // MARK: The wire's view

    /// What `GET /v1/workers` says of it.
    func info(now: Instant) -> HiveWorkerInfo {
        let state: HiveWorkerState
        var error: RbeeError?
        switch phase {
        case .starting: state = .starting
        case .loading: state = .loading
        case .ready, .busy: state = .ready
        case .stopping:
            // A worker stopped for a failure (a failed load, the loading timeout) shows it at once.
            state = stopFailure == nil ? .stopping : .failed
            error = stopFailure
        case .stopped: state = .stopped
        case .failed(let failure):
            state = .failed
            error = failure
        }
        return HiveWorkerInfo(
            workerID: workerID, modelID: modelID, url: url, progressURL: progressURL, pid: pid, state: state, slotsTotal: slotsTotal,
            slotsBusy: slotsBusy, queueDepth: queueDepth, lastHeartbeatSAgo: lastHeartbeat.map { (now - $0).milliseconds / 1000 }, restarts: 0,
            exit: exit, error: error, stderrTail: stderrTail, device: device, chatTemplate: chatTemplate)
    }
}
