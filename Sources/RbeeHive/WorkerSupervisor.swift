import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import RbeeAPI
import RbeeHTTP
import ServiceLifecycle
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Starts `llm-worker-rbee` processes and watches them. What happens to a worker is its
/// `WorkerLifecycle`'s decision; this service carries the decisions out.
///
/// Each worker runs — from its spawn, through waiting for its model, to the exit of its process —
/// as a child task of this service's task group, so none outlives the hive. Its exit is noticed at
/// once (with its status and the tail of its stderr). Probes of different workers run
/// concurrently, and a stop only asks a worker's process to end (SIGTERM, then SIGKILL after the
/// grace period): one wedged worker never holds up the supervision of the others.
public final class WorkerSupervisor: Service, Sendable {
    private struct Record: Sendable {
        var lifecycle: WorkerLifecycle
        /// Ends the worker: its process, or its wait for a model.
        let stop = ShutdownSwitch()
        /// Requested once the worker's task has ended.
        let ended = ShutdownSwitch()
        /// The first launch's outcome, which a spawn of a cached model answers with.
        let launched = ProgressBroadcast<Result<Void, RbeeError>>(isTerminal: { _ in true })
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
        let device: String
        /// The spawn request's log (its correlation id), for the worker's start and end.
        let logger: Logger
    }

    private enum Work: Sendable {
        case worker(Job)
        case probe(workerID: String, url: String)
    }

    private struct State {
        var records: [String: Record] = [:]
        /// Set when the hive shuts down: no worker starts after that.
        var closing = false
    }

    private let state = Mutex(State())
    private let settings: SupervisionSettings
    private let provisioner: ModelProvisioner
    private let token: APIToken?
    private let logger: Logger
    private let client: HTTPClient
    /// The URL workers call back on (ready, heartbeats); set once the server listens.
    private let hiveURL = Mutex<String?>(nil)
    private let work: AsyncStream<Work>
    private let workContinuation: AsyncStream<Work>.Continuation

    init(settings: SupervisionSettings, provisioner: ModelProvisioner, token: APIToken?, logger: Logger, client: HTTPClient = .rbee) {
        self.settings = settings
        self.provisioner = provisioner
        self.token = token
        self.logger = logger
        self.client = client
        (work, workContinuation) = AsyncStream.makeStream()
    }

    func setHiveURL(_ url: String) { hiveURL.withLock { $0 = url } }

    public func list() -> [HiveWorkerInfo] {
        let now = ContinuousClock.now
        return state.withLock { state in state.records.values.map { $0.lifecycle.info(now: now) } }.sorted { $0.workerID < $1.workerID }
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

    private func watch() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(1))
            let now = ContinuousClock.now
            let decisions = state.withLock { state in
                Array(state.records.keys).compactMap { id -> (String, [WorkerLifecycle.Action])? in
                    guard var lifecycle = state.records[id]?.lifecycle else { return nil }
                    let actions = lifecycle.tick(now: now)
                    state.records[id]?.lifecycle = lifecycle
                    return (id, actions)
                }
            }
            for (id, actions) in decisions { perform(actions, for: id) }
        }
    }

    private func probe(_ workerID: String, url: String) async {
        var healthy = false
        if let response = try? await client.execute(HTTPClientRequest(url: url + "/health"), timeout: .seconds(3)) {
            _ = try? await response.body.collect(upTo: 64 * 1024)
            healthy = response.status.code == 200
        }
        perform(update(workerID) { $0.probed(healthy: healthy, now: .now) } ?? [], for: workerID)
    }

    // MARK: Spawning

    /// `POST /v1/workers/spawn`: a worker of the model (a serving one when `reuse`), answered once
    /// its process runs, or at once while its model still downloads.
    public func spawn(_ request: WorkerSpawnRequest, logger: Logger? = nil) async throws(RbeeError) -> HiveWorkerInfo {
        let logger = (logger ?? self.logger)
        let device = try await Self.device(for: request)
        let started = try await provisioner.request(DownloadRequest(modelRef: request.modelRef), logger: logger)
        if request.reuse ?? true, let existing = state.withLock({ state in
            state.records.values.first { $0.lifecycle.modelID == started.modelID && $0.lifecycle.isServing }?.lifecycle.info(now: .now)
        }) {
            return existing
        }
        if started.status == .cached, let modelPath = started.localPath {
            try checkMemory(modelID: started.modelID, modelPath: modelPath)
        }
        let workerID = "worker-" + String(UUID().uuidString.lowercased().prefix(8))
        let downloadProgress = (hiveURL.withLock { $0 } ?? "") + "/v1/models/download/progress?id=" + (started.downloadID ?? "")
        let model: Job.Model =
            if started.status == .cached, let path = started.localPath { .path(path) } else { .download(id: started.downloadID ?? "") }
        let record = try reserve(workerID, modelID: started.modelID, progressURL: started.status == .cached ? nil : downloadProgress)
        var workerLogger = logger
        workerLogger[metadataKey: "worker_id"] = .string(workerID)
        workContinuation.yield(.worker(Job(workerID: workerID, model: model, request: request, device: device, logger: workerLogger)))
        guard case .path = model else { return record.lifecycle.info(now: .now) }
        // A cached model: answer once the process runs (or could not start).
        for await outcome in record.launched.subscribe() { try outcome.get() }
        return state.withLock { $0.records[workerID]?.lifecycle.info(now: .now) } ?? record.lifecycle.info(now: .now)
    }

    /// Checks the request's numbers and its device; returns the device.
    private static func device(for request: WorkerSpawnRequest) async throws(RbeeError) -> String {
        var fieldErrors: [RbeeError.FieldError] = []
        if let parallel = request.parallel, !(1...64).contains(parallel) { fieldErrors.append(.init(field: "parallel", message: "must be 1…64")) }
        if let ctx = request.ctxSize, !(16...1_048_576).contains(ctx) { fieldErrors.append(.init(field: "ctx_size", message: "must be 16…1048576")) }
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

    /// A record with a port of the range no worker holds and that can be bound now. The bind test
    /// runs outside the lock; the record is created only if no other spawn took the port meanwhile.
    private func reserve(_ workerID: String, modelID: String, progressURL: String?) throws(RbeeError) -> Record {
        let taken = state.withLock { state in Set(state.records.values.map(\.lifecycle.port)) }
        for port in settings.ports where !taken.contains(port) && Self.isFree(port: port) {
            let url = "http://127.0.0.1:\(port)"
            let record = Record(
                lifecycle: WorkerLifecycle(
                    workerID: workerID, modelID: modelID, port: port, url: url, progressURL: progressURL ?? url + "/v1/loading/progress",
                    timers: settings.timers, now: .now))
            let outcome: Result<Bool, RbeeError> = state.withLock { state in
                guard !state.closing else { return .failure(RbeeError(.unavailable, "the hive is shutting down", retryAfter: 1)) }
                guard !state.records.values.contains(where: { $0.lifecycle.port == port }) else { return .success(false) }
                state.records[workerID] = record
                return .success(true)
            }
            if try outcome.get() { return record }
        }
        throw RbeeError(.unavailable, "no free port in \(settings.ports)", retryAfter: 5)
    }

    static func isFree(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr = in_addr(s_addr: inet_addr("127.0.0.1"))
        return withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }

    // MARK: A worker's task

    private func runWorker(_ job: Job) async {
        guard let record = state.withLock({ $0.records[job.workerID] }) else { return }
        defer {
            // Whoever waits for the launch hears of it, however this ended.
            record.launched.publish(.failure(RbeeError(.cancelled, "the worker ended before it started", details: ["worker_id": .string(job.workerID)])))
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
                update(job.workerID) { $0.modelFailed(error) }
                record.launched.publish(.failure(error))
                return
            }
        }
        let closing = state.withLock { $0.closing }
        guard !closing, !Task.isCancelled, update(job.workerID, { $0.modelArrived(path: modelPath) })?.contains(.launch(modelPath: modelPath)) == true
        else {
            let error = RbeeError(.cancelled, "the worker was stopped before it started", details: ["worker_id": .string(job.workerID)])
            update(job.workerID) { $0.modelFailed(error) }
            record.launched.publish(.failure(error))
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

    private func launch(_ job: Job, modelPath: String, record: Record) async {
        let port = record.lifecycle.port
        let url = "http://127.0.0.1:\(port)"
        let binary: String
        do throws(RbeeError) {
            if let configured = settings.workerBinary { binary = configured } else { binary = try ProgramDirectory.program("llm-worker-rbee") }
        } catch {
            update(job.workerID) { $0.launchFailed(error) }
            record.launched.publish(.failure(error))
            return
        }
        var arguments = [
            "--model", modelPath, "--port", "\(port)", "--worker-id", job.workerID,
            "--heartbeat-secs", "\(Double(settings.heartbeatInterval.milliseconds) / 1000)",
            "--loading-timeout-secs", "\(Double(settings.loadingTimeout.milliseconds) / 1000)",
        ]
        if let callback = hiveURL.withLock({ $0 }) { arguments += ["--hive-url", callback] }
        if let parallel = job.request.parallel { arguments += ["--parallel", "\(parallel)"] }
        if let ctx = job.request.ctxSize { arguments += ["--ctx-size", "\(ctx)"] }
        if job.device.hasPrefix("cuda:") { arguments += ["--gpu-layers", "999"] }
        // The token goes through the environment, never argv.
        let process = ChildProcess(
            executable: binary, arguments: arguments, environment: ["RBEE_API_TOKEN": token?.value], grace: settings.stopGrace)
        do throws(RbeeError) {
            let termination = try await process.run(stop: record.stop) { [self] pid in
                update(job.workerID) { $0.launched(pid: pid, progressURL: url + "/v1/loading/progress", now: .now) }
                job.logger.info("worker spawned", metadata: ["model_path": "\(modelPath)", "pid": "\(pid)", "url": "\(url)"])
                record.launched.publish(.success(()))
            }
            let (actions, expected) =
                state.withLock { state -> ([WorkerLifecycle.Action], Bool) in
                    guard var lifecycle = state.records[job.workerID]?.lifecycle else { return ([], true) }
                    let expected = if case .stopping = lifecycle.phase { true } else { false }
                    let actions = lifecycle.exited(status: termination.status, stderrTail: termination.stderrTail)
                    state.records[job.workerID]?.lifecycle = lifecycle
                    return (actions, expected)
                }
            if expected {
                job.logger.info("worker stopped", metadata: ["exit": "\(termination.status)"])
            } else {
                job.logger.error("worker crashed", metadata: ["exit": "\(termination.status)", "stderr_tail": "\(termination.stderrTail ?? "")"])
            }
            perform(actions, for: job.workerID)
        } catch {
            job.logger.error("worker could not start", metadata: ["error": "\(error)"])
            update(job.workerID) { $0.launchFailed(error) }
            record.launched.publish(.failure(error))
        }
    }

    // MARK: Reports from workers

    /// `POST /v1/workers/ready`. Unknown workers get false (404), so orphans give up.
    func ready(_ report: WorkerReadyReport) -> Bool {
        guard let actions = update(report.workerID, { $0.reportedReady(slotsTotal: report.slotsTotal, failure: report.error, now: .now) }) else {
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

    /// Stops a worker (SIGTERM, then SIGKILL after the grace period) and returns once it has
    /// ended; `forget` removes it from the list afterwards. False for an unknown worker.
    public func stop(_ workerID: String, reason: String, forget: Bool = true) async -> Bool {
        guard let record = state.withLock({ $0.records[workerID] }) else { return false }
        let actions = update(workerID) { $0.stopRequested(reason: reason, forget: forget) } ?? []
        // Also ends a wait for the worker's model, which has no process to stop.
        record.stop.request()
        perform(actions, for: workerID)
        await record.ended.wait()
        return true
    }

    /// The hive shuts down: no worker starts from now on, and every one stops, in parallel.
    public func stopAll() async {
        let ids = state.withLock { state in
            state.closing = true
            return Array(state.records.keys)
        }
        guard !ids.isEmpty else { return }
        await withTaskGroup(of: Void.self) { group in
            for id in ids {
                group.addTask { _ = await self.stop(id, reason: "hive shutdown", forget: false) }
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
                guard let url = state.withLock({ $0.records[workerID]?.lifecycle.url }) else { continue }
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
