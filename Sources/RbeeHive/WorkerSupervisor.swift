import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import RbeeAPI
import RbeeGGUF
import RbeeHTTP
import ServiceLifecycle
import Synchronization

/// Starts `llm-worker-rbee` processes and watches them. What happens to a worker is its
/// `WorkerLifecycle`'s decision; this service carries the decisions out.
///
/// Each worker runs — from its spawn, through waiting for its model, to the exit of its process —
/// as a child task of this service's task group, so none outlives the hive. A worker binds a port
/// the system picks and says which (`POST /v1/workers/listening`), so no two workers on a host
/// collide, whichever hive started them. Its exit is noticed at once (with its status and the tail
/// of its log). Its loading progress is relayed by the hive (`GET /v1/workers/{id}/progress`), so
/// a worker that dies while loading still ends every subscriber with an error. Probes of
/// different workers run concurrently, and a stop only asks a worker's process to end (SIGTERM,
/// then SIGKILL after the grace period): one wedged worker never holds up the others. Each
/// worker's log goes to a file under the hive's home, rotated and size-capped.
public final class WorkerSupervisor: Service, Sendable {
    private struct Record: Sendable {
        var lifecycle: WorkerLifecycle
        /// Ends the worker: its process, or its wait for a model.
        let stop = ShutdownSwitch()
        /// Requested once the worker's task has ended.
        let ended = ShutdownSwitch()
        /// The first launch's outcome (the process listens, or could not start), which a spawn of a
        /// cached model answers with.
        let listening = ProgressBroadcast<Result<Void, RbeeError>>(isTerminal: { _ in true })
        /// The worker's loading progress, relayed; it ends with an error if the worker dies first.
        let loading: ProgressBroadcast<LoadingProgress>
        let logFile: String
        /// The chat template file the worker was started with, if any: a reuse must match it.
        var chatTemplateFile: String? = nil
    }

    /// A worker's task: wait for its model if needed, then run its process.
    private struct Job: Sendable {
        enum Model: Sendable {
            case path(String)
            case download(id: String)
        }
        let workerID: String
        let model: Model
        let request: WorkerSpawnRequest
        /// The spawn request's log (its correlation id), for the worker's start and end.
        let logger: Logger
    }

    private enum Work: Sendable {
        case worker(Job)
        case probe(workerID: String, url: String)
    }

    private struct State {
        var records: [String: Record] = [:]
        /// The port of each worker's process, from its launch to the end of its task.
        var ports: [String: Int] = [:]
        /// Where the next search of the port range starts, so a port just given up is the last
        /// to be handed out again.
        var portCursor = 0
        /// Set when the hive shuts down: no worker starts after that.
        var closing = false
    }

    private let state = Mutex(State())
    private let settings: SupervisionSettings
    private let provisioner: ModelProvisioner
    private let token: APIToken?
    private let logger: Logger
    private let client: HTTPClient
    private let metrics: HiveMetrics
    /// Where workers' logs go.
    let logDirectory: String
    /// The URL workers call back on (listening, ready, heartbeats); set once the server listens.
    private let hiveURL = Mutex<String?>(nil)
    private let work: AsyncStream<Work>
    private let workContinuation: AsyncStream<Work>.Continuation

    init(
        settings: SupervisionSettings, provisioner: ModelProvisioner, token: APIToken?, logDirectory: String, logger: Logger,
        client: HTTPClient = .rbee, metrics: HiveMetrics = HiveMetrics()
    ) {
        self.metrics = metrics
        self.settings = settings
        self.provisioner = provisioner
        self.token = token
        self.logDirectory = logDirectory
        self.logger = logger
        self.client = client
        (work, workContinuation) = AsyncStream.makeStream()
    }

    func setHiveURL(_ url: String) { hiveURL.withLock { $0 = url } }

    public func list() -> [HiveWorkerInfo] {
        let now = ContinuousClock.now
        return state.withLock { state in state.records.values.map { $0.lifecycle.info(now: now) } }.sorted { $0.workerID < $1.workerID }
    }

    /// A worker's loading progress, from its latest state; nil for an unknown worker.
    func loadingProgress(_ workerID: String) -> AsyncStream<LoadingProgress>? {
        state.withLock { $0.records[workerID]?.loading }?.subscribe()
    }

    /// The end of a worker's log (the rotated part first), at most `bytes`; nil for an unknown worker.
    func log(_ workerID: String, bytes: Int) -> String? {
        let path = state.withLock { $0.records[workerID]?.logFile } ?? logDirectory + "/" + workerID + ".log"
        guard Validation.isValidID(workerID), FileManager.default.fileExists(atPath: path) else { return nil }
        let current = FileManager.default.contents(atPath: path) ?? Data()
        let rotated = current.count < bytes ? FileManager.default.contents(atPath: path + ".1") ?? Data() : Data()
        return String(decoding: (rotated + current).suffix(bytes), as: UTF8.self)
    }

    // MARK: The service

    /// Runs every worker's task and the once-a-second check of all of them, until shutdown.
    public func run() async throws {
        await cancelWhenGracefulShutdown { [self] in
            await withDiscardingTaskGroup { group in
                group.addTask { await self.watch() }
                for await item in work {
                    switch item {
                    case .worker(let job): group.addTask { await self.runWorker(job) }
                    case .probe(let workerID, let url): group.addTask { await self.probe(workerID, url: url) }
                    }
                }
            }
        }
    }

    /// Ticks often enough that a probe is never late by more than half its interval. A tick far
    /// later than its period is a gap in the hive's own clock (its machine was suspended, its
    /// process stopped): the workers' silence over it is forgiven and they are probed first.
    private func watch() async {
        let period = min(.seconds(1), settings.healthProbeInterval / 2)
        var last = ContinuousClock.now
        while !Task.isCancelled {
            try? await Task.sleep(for: period)
            let now = ContinuousClock.now
            let late = now - last - period
            last = now
            let gap = late > Self.clockGapTolerance ? late : nil
            if let gap {
                logger.warning(
                    "hive clock gap: this hive did not run for a while; probing workers before judging their silence",
                    metadata: ["gap_ms": "\(gap.milliseconds)"])
            }
            let decisions = state.withLock { state in
                Array(state.records.keys).compactMap { id -> (String, [WorkerLifecycle.Action])? in
                    guard var lifecycle = state.records[id]?.lifecycle else { return nil }
                    let actions = gap.map { lifecycle.clockGap($0, now: now) } ?? lifecycle.tick(now: now)
                    state.records[id]?.lifecycle = lifecycle
                    return (id, actions)
                }
            }
            for (id, actions) in decisions { perform(actions, for: id) }
        }
    }

    /// How late a tick may be before it counts as a gap in the hive's clock: more than a busy
    /// machine delays a timer, less than any silence that stops a worker.
    static let clockGapTolerance: Duration = .milliseconds(750)

    /// A health probe, bounded by the probe interval: three missed in a row stop a frozen worker
    /// within three intervals.
    private func probe(_ workerID: String, url: String) async {
        var healthy = false
        let timeout = min(settings.healthProbeInterval, .seconds(3))
        if let response = try? await client.execute(HTTPClientRequest(url: url + "/health"), timeout: .milliseconds(Int64(timeout.milliseconds))) {
            _ = try? await response.body.collect(upTo: 64 * 1024)
            healthy = response.status.code == 200
        }
        perform(update(workerID) { $0.probed(healthy: healthy, now: .now) } ?? [], for: workerID)
    }

    // MARK: Spawning

    /// `POST /v1/workers/spawn`: a worker of the model (a serving one when `reuse`), answered once
    /// its process listens, or at once while its model still downloads.
    public func spawn(_ request: WorkerSpawnRequest, logger: Logger? = nil) async throws(RbeeError) -> HiveWorkerInfo {
        let logger = logger ?? self.logger
        let device = try await Self.device(for: request)
        let started = try await provisioner.request(DownloadRequest(modelRef: request.modelRef), logger: logger)
        var request = request
        if request.chatTemplateFile == nil,
            let file = try await provisioner.catalogCall({ try await self.provisioner.catalog.chatTemplateFile(id: started.modelID) })
        {
            request.chatTemplateFile = file
        }
        if request.reuse ?? true, let existing = state.withLock({ state in
            state.records.values.first {
                $0.lifecycle.modelID == started.modelID && $0.lifecycle.isServing && $0.chatTemplateFile == request.chatTemplateFile
            }?.lifecycle.info(now: .now)
        }) {
            return existing
        }
        if started.status == .cached, let modelPath = started.localPath {
            try checkMemory(modelID: started.modelID, modelPath: modelPath)
        }
        if let range = settings.workerPorts, !hasFreePort(in: range) { throw Self.noPort(range) }
        let workerID = "worker-" + String(UUID().uuidString.lowercased().prefix(8))
        let base = hiveURL.withLock { $0 } ?? ""
        let model: Job.Model =
            if started.status == .cached, let path = started.localPath { .path(path) } else { .download(id: started.downloadID ?? "") }
        let layers = started.localPath.flatMap { try? GGUFFile(path: $0).blockCount } ?? 0
        let progressURL: String =
            if case .download(let id) = model { base + "/v1/models/download/progress?id=" + id } else { base + "/v1/workers/\(workerID)/progress" }
        let record = Record(
            lifecycle: WorkerLifecycle(
                workerID: workerID, modelID: started.modelID, device: device, progressURL: progressURL, timers: settings.timers, now: .now),
            loading: ProgressBroadcast(initial: .loading(layersLoaded: 0, layersTotal: layers, vramMB: 0, ramMB: 0), isTerminal: { $0.isTerminal }),
            logFile: logDirectory + "/" + workerID + ".log", chatTemplateFile: request.chatTemplateFile)
        let admitted = state.withLock { state -> Bool in
            guard !state.closing else { return false }
            state.records[workerID] = record
            return true
        }
        guard admitted else { throw RbeeError(.unavailable, "the hive is shutting down", retryAfter: 1) }
        var workerLogger = logger
        workerLogger[metadataKey: "worker_id"] = .string(workerID)
        workContinuation.yield(.worker(Job(workerID: workerID, model: model, request: request, logger: workerLogger)))
        guard case .path = model else { return record.lifecycle.info(now: .now) }
        for await outcome in record.listening.subscribe() { try outcome.get() }
        return state.withLock { $0.records[workerID]?.lifecycle.info(now: .now) } ?? record.lifecycle.info(now: .now)
    }

    /// Checks the request's numbers and its device; returns the device.
    private static func device(for request: WorkerSpawnRequest) async throws(RbeeError) -> String {
        var fieldErrors: [RbeeError.FieldError] = []
        if let parallel = request.parallel, !(1...64).contains(parallel) { fieldErrors.append(.init(field: "parallel", message: "must be 1…64")) }
        if let ctx = request.ctxSize, !(16...1_048_576).contains(ctx) { fieldErrors.append(.init(field: "ctx_size", message: "must be 16…1048576")) }
        if let file = request.chatTemplateFile, !file.hasPrefix("/") || !FileManager.default.isReadableFile(atPath: file) {
            fieldErrors.append(.init(field: "chat_template_file", message: "must be the absolute path of a readable file on this hive, got \(file)"))
        }
        if !fieldErrors.isEmpty { throw RbeeError.invalid(fieldErrors) }
        let device = request.device ?? "cpu"
        guard device == "cpu" || device.hasPrefix("cuda:") else {
            throw RbeeError(.invalidDevice, "device must be cpu or cuda:N, got \(device)", details: ["device": .string(device)])
        }
        if device.hasPrefix("cuda:") {
            let index = Int(device.dropFirst(5)) ?? -1
            guard await DeviceInventory.detect().gpus.contains(where: { $0.index == index }) else {
                throw RbeeError(.invalidDevice, "no GPU \(device) on this machine", details: ["device": .string(device)])
            }
        }
        return device
    }

    /// About `memoryHeadroom` × the model's size must be available, else 507 `INSUFFICIENT_RAM`.
    private func checkMemory(modelID: String, modelPath: String) throws(RbeeError) {
        let modelSize = ((try? FileManager.default.attributesOfItem(atPath: modelPath)[.size]) as? Int) ?? 0
        let available = min(DeviceInventory.memoryInfo().available, settings.memoryLimitBytes ?? .max)
        let needed = Int(Double(modelSize) * settings.memoryHeadroom)
        guard needed <= available else {
            throw RbeeError(
                .insufficientRAM, "model \(modelID) needs about \(needed >> 20) MiB; \(available >> 20) MiB are available",
                details: ["bytes_needed": .number(Double(needed)), "bytes_available": .number(Double(available))])
        }
    }

    // MARK: A worker's task

    private func runWorker(_ job: Job) async {
        guard let record = state.withLock({ $0.records[job.workerID] }) else { return }
        defer {
            // Whoever waits for the launch or the load hears of it, however this ended.
            let ended = RbeeError(.cancelled, "the worker ended before it started", details: ["worker_id": .string(job.workerID)])
            record.listening.publish(.failure(ended))
            record.loading.publish(.failed(ended))
            state.withLock { _ = $0.ports.removeValue(forKey: job.workerID) }
            record.ended.request()
        }
        let modelPath: String
        switch job.model {
        case .path(let path):
            modelPath = path
        case .download(let downloadID):
            do throws(RbeeError) {
                modelPath = try await waitForModel(downloadID, stop: record.stop)
                try checkMemory(modelID: record.lifecycle.modelID, modelPath: modelPath)
            } catch {
                job.logger.error("worker could not start", metadata: ["error": "\(error)"])
                update(job.workerID) { $0.modelFailed(error, now: .now) }
                metrics.recordSpawn(launched: false)
                return
            }
        }
        let closing = state.withLock { $0.closing }
        guard !closing, !Task.isCancelled, update(job.workerID, { $0.modelArrived(path: modelPath) })?.contains(.launch(modelPath: modelPath)) == true
        else {
            update(job.workerID) { $0.modelFailed(RbeeError(.cancelled, "the worker was stopped before it started"), now: .now) }
            metrics.recordSpawn(launched: false)
            return
        }
        await launch(job, modelPath: modelPath, record: record)
    }

    /// The download's end: the model's path, or why there is none.
    private func waitForModel(_ downloadID: String, stop: ShutdownSwitch) async throws(RbeeError) -> String {
        let events = provisioner.tracker.subscribe(downloadID) ?? AsyncStream(DownloadProgress.self) { $0.finish() }
        let terminal = await withTaskGroup(of: DownloadProgress?.self) { group in
            group.addTask { await events.first { $0.isTerminal } }
            group.addTask {
                await stop.wait()
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
        switch terminal {
        case .complete(let path, _, _)?: return path
        case .failed(let error)?: throw error
        default: throw RbeeError(.cancelled, "the worker was stopped while its model downloaded")
        }
    }

    /// Runs the worker's process to its end, relaying its loading progress meanwhile.
    private func launch(_ job: Job, modelPath: String, record: Record) async {
        let binary: String
        do throws(RbeeError) {
            if let configured = settings.workerBinary { binary = configured } else { binary = try ProgramDirectory.program("llm-worker-rbee") }
        } catch {
            update(job.workerID) { $0.launchFailed(error, now: .now) }
            metrics.recordSpawn(launched: false)
            record.listening.publish(.failure(error))
            return
        }
        var arguments = [
            "--model", modelPath, "--worker-id", job.workerID, "--host", settings.workerHost,
            "--heartbeat-secs", "\(Double(settings.heartbeatInterval.milliseconds) / 1000)",
            "--loading-timeout-secs", "\(Double(settings.loadingTimeout.milliseconds) / 1000)",
        ]
        if let callback = hiveURL.withLock({ $0 }) { arguments += ["--hive-url", callback] }
        if let parallel = job.request.parallel { arguments += ["--parallel", "\(parallel)"] }
        if let ctx = job.request.ctxSize { arguments += ["--ctx-size", "\(ctx)"] }
        if let template = job.request.chatTemplateFile { arguments += ["--chat-template-file", template] }
        if record.lifecycle.device.hasPrefix("cuda:") { arguments += ["--gpu-layers", "999"] }
        try? FileManager.default.createDirectory(atPath: logDirectory, withIntermediateDirectories: true)
        let base = hiveURL.withLock { $0 } ?? ""
        await withTaskGroup(of: Void.self) { group in
            group.addTask { [self] in await relayLoading(job.workerID, record: record) }
            var taken: Set<Int> = []
            while true {
                guard let port = reservePort(for: job.workerID, skipping: taken) else {
                    let error = Self.noPort(settings.workerPorts ?? 0...0)
                    job.logger.error("worker could not start", metadata: ["error": "\(error)"])
                    update(job.workerID) { $0.launchFailed(error, now: .now) }
                    metrics.recordSpawn(launched: false)
                    record.listening.publish(.failure(error))
                    break
                }
                // The token goes through the environment, never argv.
                var attempt = arguments + ["--port", "\(port)"]
                if let advertised = settings.workerAdvertisedHost, advertised != settings.workerHost, port != 0 {
                    attempt += ["--advertise-url", "http://\(advertised):\(port)"]
                }
                let process = ChildProcess(
                    executable: binary, arguments: attempt, environment: ["RBEE_API_TOKEN": token?.value],
                    logFile: record.logFile, logLimitBytes: settings.logLimitBytes, grace: settings.stopGrace)
                let retry = !taken.isEmpty
                do throws(RbeeError) {
                    let termination = try await process.run(stop: record.stop) { [self] pid in
                        update(job.workerID) { $0.launched(pid: pid, progressURL: base + "/v1/workers/\(job.workerID)/progress", now: .now) }
                        if !retry { metrics.recordSpawn(launched: true) }
                        job.logger.info(
                            "worker started", metadata: ["model_path": "\(modelPath)", "pid": "\(pid)", "port": "\(port)", "log": "\(record.logFile)"])
                    }
                    // Another program took the port between the check and the worker's bind: the
                    // next free port of the range.
                    if termination.status == "exit \(DaemonServer.portTakenExitCode)", settings.workerPorts != nil, !record.stop.isRequested {
                        taken.insert(port)
                        job.logger.warning("worker port taken; starting it on the next free port", metadata: ["port": "\(port)"])
                        continue
                    }
                    let (actions, expected, failure) = state.withLock { state -> ([WorkerLifecycle.Action], Bool, RbeeError?) in
                        guard var lifecycle = state.records[job.workerID]?.lifecycle else { return ([], true, nil) }
                        let stopReason: WorkerLifecycle.StopReason? = if case .stopping(let reason) = lifecycle.phase { reason } else { nil }
                        let expected = stopReason != nil
                        metrics.recordStop(reason: stopReason?.kind.rawValue ?? "crashed")
                        let actions = lifecycle.exited(status: termination.status, stderrTail: termination.stderrTail, now: .now)
                        state.records[job.workerID]?.lifecycle = lifecycle
                        return (actions, expected, lifecycle.info(now: .now).error)
                    }
                    // Whoever waits for it to listen or load hears why it ended (a loading timeout, say).
                    let ended =
                        failure
                        ?? RbeeError(
                            .workerCrashed, "the worker process ended (\(termination.status)) before it had loaded its model",
                            details: ["worker_id": .string(job.workerID), "exit": .string(termination.status)])
                    record.listening.publish(.failure(ended))
                    record.loading.publish(.failed(ended))
                    if termination.forcedKill {
                        let pid = state.withLock { $0.records[job.workerID]?.lifecycle.pid }.map { "\($0)" } ?? "?"
                        job.logger.warning(
                            "worker ignored SIGTERM and was killed with SIGKILL after the grace period",
                            metadata: ["pid": "\(pid)", "grace_s": "\(Double(settings.stopGrace.milliseconds) / 1000)", "exit": "\(termination.status)"])
                    } else if expected {
                        job.logger.info("worker stopped", metadata: ["exit": "\(termination.status)"])
                    } else {
                        job.logger.error("worker crashed", metadata: ["exit": "\(termination.status)", "stderr_tail": "\(termination.stderrTail ?? "")"])
                    }
                    perform(actions, for: job.workerID)
                } catch {
                    job.logger.error("worker could not start", metadata: ["error": "\(error)"])
                    update(job.workerID) { $0.launchFailed(error, now: .now) }
                    metrics.recordSpawn(launched: false)
                    record.listening.publish(.failure(error))
                }
                break
            }
            group.cancelAll()
        }
    }

    // MARK: Ports

    /// A port of the range for the worker, held for it until its task ends: free now, held by
    /// no other worker of this hive, not in `skipping`. 0 (the system picks) without a range;
    /// nil when the range is full.
    private func reservePort(for workerID: String, skipping: Set<Int>) -> Int? {
        guard let range = settings.workerPorts else { return 0 }
        return state.withLock { state in
            let held = Set(state.ports.filter { $0.key != workerID }.values).union(skipping)
            for offset in 0..<range.count {
                let port = range.lowerBound + (state.portCursor + offset) % range.count
                guard !held.contains(port), LocalPort.isFree(port, host: settings.workerHost) else { continue }
                state.portCursor = (port - range.lowerBound + 1) % range.count
                state.ports[workerID] = port
                return port
            }
            return nil
        }
    }

    private func hasFreePort(in range: ClosedRange<Int>) -> Bool {
        let held = state.withLock { Set($0.ports.values) }
        return range.contains { !held.contains($0) && LocalPort.isFree($0, host: settings.workerHost) }
    }

    static func noPort(_ range: ClosedRange<Int>) -> RbeeError {
        let text = "\(range.lowerBound)-\(range.upperBound)"
        return RbeeError(
            .noPort, "no port of the worker port range \(text) is free (--worker-ports)", details: ["worker_ports": .string(text)])
    }

    /// Follows the worker's own loading progress, once it listens, into the record's broadcast.
    private func relayLoading(_ workerID: String, record: Record) async {
        for await outcome in record.listening.subscribe() {
            guard case .success = outcome else { return }
        }
        guard let url = state.withLock({ $0.records[workerID]?.lifecycle.url }), !url.isEmpty else { return }
        let client = RbeeClient(http: client, token: token?.value, unreachableCode: .workerCrashed)
        // It listens before it has the model: a refused first connection is only retried.
        while !Task.isCancelled, !record.loading.isFinished {
            do {
                for try await message in try await client.stream(.GET, url + "/v1/loading/progress", timeout: .seconds(5)).events(of: LoadingProgress.self) {
                    if case .event(let progress) = message { record.loading.publish(progress) }
                }
            } catch {
                try? await Task.sleep(for: .milliseconds(100))
            }
        }
    }

    // MARK: Reports from workers

    /// `POST /v1/workers/listening`. Unknown workers get false (404), so orphans give up.
    func listening(_ report: WorkerListening) -> Bool {
        guard let record = state.withLock({ $0.records[report.workerID] }) else { return false }
        update(report.workerID) { $0.listening(url: report.url) }
        record.listening.publish(.success(()))
        return true
    }

    /// `POST /v1/workers/ready`. Unknown workers get false (404), so orphans give up.
    func ready(_ report: WorkerReadyReport) -> Bool {
        guard let actions = update(report.workerID, { lifecycle in
            lifecycle.chatTemplate = report.chatTemplate
            return lifecycle.reportedReady(slotsTotal: report.slotsTotal, failure: report.error, now: .now)
        }) else {
            return false
        }
        if let error = report.error {
            logger.error("worker failed to load", metadata: ["worker_id": "\(report.workerID)", "error": "\(error)"])
        } else {
            logger.info("worker ready", metadata: ["worker_id": "\(report.workerID)"])
        }
        perform(actions, for: report.workerID)
        return true
    }

    /// `POST /v1/workers/heartbeat`.
    func heartbeat(_ beat: WorkerHeartbeat) -> Bool {
        update(beat.workerID) {
            $0.heartbeat(slotsTotal: beat.slotsTotal, slotsBusy: beat.slotsBusy, queueDepth: beat.queueDepth, jobsAccepted: beat.jobsAccepted, now: .now)
        } ?? false
    }

    // MARK: Stopping

    /// Asks a worker to stop (SIGTERM, then SIGKILL after the grace period) and returns at once
    /// with its state (`stopping`); it stays listed until `endedRetention` after its end, or
    /// goes as soon as it ended with `forget`. Nil for an unknown worker.
    @discardableResult
    func requestStop(_ workerID: String, reason: WorkerLifecycle.StopReason, forget: Bool = false, failure: RbeeError? = nil) -> HiveWorkerInfo? {
        guard let record = state.withLock({ $0.records[workerID] }) else { return nil }
        let actions = update(workerID) { $0.stopRequested(reason: reason, forget: forget, failure: failure, now: .now) } ?? []
        logger.info("stopping worker", metadata: ["worker_id": "\(workerID)", "reason": "\(reason)"])
        // Also ends a wait for the worker's model, which has no process to stop.
        record.stop.request()
        let info = state.withLock { $0.records[workerID]?.lifecycle.info(now: .now) }
        perform(actions.filter { $0 != .stop(reason: reason) }, for: workerID)
        return info
    }

    /// `requestStop`, then waits until the worker's task has ended.
    func stop(_ workerID: String, reason: WorkerLifecycle.StopReason, forget: Bool = true, failure: RbeeError? = nil) async -> Bool {
        guard let record = state.withLock({ $0.records[workerID] }) else { return false }
        requestStop(workerID, reason: reason, forget: forget, failure: failure)
        await record.ended.wait()
        return true
    }

    /// The hive shuts down: no worker starts from now on, every one stops, in parallel, and a
    /// spawn still waiting for its model ends `CANCELLED`.
    public func stopAll() async {
        let ids = state.withLock { state in
            state.closing = true
            return Array(state.records.keys)
        }
        guard !ids.isEmpty else { return }
        let cancelled = RbeeError(.cancelled, "the hive shut down before the worker started")
        await withTaskGroup(of: Void.self) { group in
            for id in ids {
                group.addTask { _ = await self.stop(id, reason: .init(.shutdown, "hive shutdown"), forget: false, failure: cancelled) }
            }
            var stopped = 0
            for await _ in group {
                stopped += 1
                logger.info("shutdown progress", metadata: ["stopped": "\(stopped)/\(ids.count)"])
            }
        }
    }

    // MARK: Carrying out decisions

    /// Applies an event to a worker's lifecycle; nil for an unknown worker.
    @discardableResult
    private func update<T>(_ workerID: String, _ event: (inout WorkerLifecycle) -> T) -> T? {
        state.withLock { state in
            guard var lifecycle = state.records[workerID]?.lifecycle else { return nil }
            let result = event(&lifecycle)
            state.records[workerID]?.lifecycle = lifecycle
            return result
        }
    }

    private func perform(_ actions: [WorkerLifecycle.Action], for workerID: String) {
        for action in actions {
            switch action {
            case .stop(let reason):
                logger.info("stopping worker", metadata: ["worker_id": "\(workerID)", "reason": "\(reason)"])
                state.withLock { $0.records[workerID]?.stop }?.request()
            case .probe:
                guard let url = state.withLock({ $0.records[workerID]?.lifecycle.url }), !url.isEmpty else { continue }
                workContinuation.yield(.probe(workerID: workerID, url: url))
            case .forget:
                state.withLock { _ = $0.records.removeValue(forKey: workerID) }
            case .launch:
                // Only a worker's own task launches it (`runWorker`).
                break
            }
        }
    }
}
