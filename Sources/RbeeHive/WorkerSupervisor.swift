import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import RbeeAPI
import RbeeHTTP
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Starts `llm-worker-rbee` processes and watches them: a child that exits is noticed at once
/// (with its exit status and the tail of its stderr); a worker silent for 3 heartbeat intervals,
/// failing 3 health probes, stuck loading, or idle too long is stopped. Stopping is SIGTERM, then
/// SIGKILL after a grace period; on shutdown all workers stop in parallel and none is left.
public final class WorkerSupervisor: Sendable {
    struct Record: Sendable {
        var info: HiveWorkerInfo
        var process: ProcessBox?
        var startedAt: ContinuousClock.Instant
        var lastHeartbeat: ContinuousClock.Instant?
        var lastActivity: ContinuousClock.Instant
        var jobsAccepted = 0
        var probeFailures = 0
        var lastProbe: ContinuousClock.Instant
        var port: Int
        /// Set when the hive itself stops the process, so its exit is not a crash.
        var stopRequested = false
    }

    private let records = Mutex<[String: Record]>([:])
    private let settings: SupervisionSettings
    private let provisioner: ModelProvisioner
    private let token: APIToken?
    private let logger: Logger
    /// The URL workers call back on (ready, heartbeats); set once the server listens.
    private let hiveURL = Mutex<String?>(nil)

    init(settings: SupervisionSettings, provisioner: ModelProvisioner, token: APIToken?, logger: Logger) {
        self.settings = settings
        self.provisioner = provisioner
        self.token = token
        self.logger = logger
    }

    func setHiveURL(_ url: String) { hiveURL.withLock { $0 = url } }

    public func list() -> [HiveWorkerInfo] {
        let now = ContinuousClock.now
        return records.withLock { records in
            records.values.map { record in
                var info = record.info
                info.lastHeartbeatSAgo = record.lastHeartbeat.map { (now - $0).milliseconds / 1000 }
                return info
            }.sorted { $0.workerID < $1.workerID }
        }
    }

    // MARK: Spawning

    public func spawn(_ request: WorkerSpawnRequest) async throws(RbeeError) -> HiveWorkerInfo {
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
            let gpus = await DeviceInventory.detect().gpus
            guard gpus.contains(where: { $0.index == index }) else {
                throw RbeeError(.invalidDevice, "no GPU \(device) on this machine", details: ["device": .string(device)])
            }
        }
        let started = try await provisioner.request(DownloadRequest(modelRef: request.modelRef))
        if request.reuse ?? true, let existing = records.withLock({ records in
            records.values.first { record in
                record.info.modelID == started.modelID && [.starting, .loading, .ready].contains(record.info.state)
            }?.info
        }) {
            return existing
        }
        if started.status == .cached, let modelPath = started.localPath {
            try checkMemory(modelID: started.modelID, modelPath: modelPath)
        }
        let workerID = "worker-" + String(UUID().uuidString.lowercased().prefix(8))
        guard let port = reservePort(for: workerID, modelID: started.modelID) else {
            throw RbeeError(.unavailable, "no free port in \(settings.ports)", retryAfter: 5)
        }
        if started.status == .cached, let modelPath = started.localPath {
            return try launch(workerID, port: port, modelPath: modelPath, request: request, device: device)
        }

        // Not here yet: the worker starts once the download completes; until then the record
        // points at the download's progress.
        let downloadID = started.downloadID ?? ""
        let base = hiveURL.withLock { $0 } ?? ""
        let info = records.withLock { records -> HiveWorkerInfo? in
            records[workerID]?.info.progressURL = base + "/v1/models/download/progress?id=" + downloadID
            return records[workerID]?.info
        }
        Task {
            var terminal: DownloadProgress?
            let events = provisioner.tracker.subscribe(downloadID) ?? AsyncStream(DownloadProgress.self) { $0.finish() }
            for await event in events where event.isTerminal {
                terminal = event
            }
            guard records.withLock({ $0[workerID]?.info.state == .starting }) else { return }
            do throws(RbeeError) {
                guard case .complete(let path, _, _)? = terminal else {
                    if case .failed(let code, let message)? = terminal { throw RbeeError(ErrorCode(rawValue: code) ?? .downloadFailed, message) }
                    throw RbeeError(.downloadFailed, "the download of \(started.modelID) ended without a result")
                }
                try checkMemory(modelID: started.modelID, modelPath: path)
                _ = try launch(workerID, port: port, modelPath: path, request: request, device: device)
            } catch {
                records.withLock { records in
                    records[workerID]?.info.state = .failed
                    records[workerID]?.info.error = error.description
                }
                logger.error("worker could not start", metadata: ["worker_id": "\(workerID)", "error": "\(error)"])
            }
        }
        return info ?? HiveWorkerInfo(
            workerID: workerID, modelID: started.modelID, url: "http://127.0.0.1:\(port)", progressURL: "", pid: nil, state: .starting,
            slotsTotal: 0, slotsBusy: 0, queueDepth: 0, lastHeartbeatSAgo: nil, restarts: 0, exit: nil, error: nil, stderrTail: nil)
    }

    /// About `memoryHeadroom` × the model's size must be available, else 507 `INSUFFICIENT_RAM`.
    private func checkMemory(modelID: String, modelPath: String) throws(RbeeError) {
        let modelSize = ((try? FileManager.default.attributesOfItem(atPath: modelPath)[.size]) as? Int) ?? 0
        let available = DeviceInventory.memoryInfo().available
        let needed = Int(Double(modelSize) * settings.memoryHeadroom)
        guard needed <= available else {
            throw RbeeError(
                .insufficientRAM, "model \(modelID) needs about \(needed >> 20) MiB; \(available >> 20) MiB are available",
                details: ["bytes_needed": .number(Double(needed)), "bytes_available": .number(Double(available))])
        }
    }

    /// Starts the worker process for a reserved record.
    private func launch(_ workerID: String, port: Int, modelPath: String, request: WorkerSpawnRequest, device: String) throws(RbeeError)
        -> HiveWorkerInfo
    {
        let url = "http://127.0.0.1:\(port)"
        var arguments = [
            "--model", modelPath, "--port", "\(port)", "--worker-id", workerID,
            "--heartbeat-secs", "\(Double(settings.heartbeatInterval.milliseconds) / 1000)",
            "--loading-timeout-secs", "\(Double(settings.loadingTimeout.milliseconds) / 1000)",
        ]
        if let callback = hiveURL.withLock({ $0 }) { arguments += ["--hive-url", callback] }
        if let parallel = request.parallel { arguments += ["--parallel", "\(parallel)"] }
        if let ctx = request.ctxSize { arguments += ["--ctx-size", "\(ctx)"] }
        if device.hasPrefix("cuda:") { arguments += ["--gpu-layers", "999"] }
        var environment = ProcessInfo.processInfo.environment
        // The token goes through the environment, never argv.
        if let token { environment["RBEE_API_TOKEN"] = token.value }

        let box = ProcessBox()
        do {
            try box.start(executable: settings.workerBinary, arguments: arguments, environment: environment) { [weak self] status in
                self?.exited(workerID, status: status)
            }
        } catch {
            records.withLock { _ = $0.removeValue(forKey: workerID) }
            throw RbeeError(.internalError, "cannot start \(settings.workerBinary): \(error)")
        }
        let info = records.withLock { records -> HiveWorkerInfo? in
            guard var record = records[workerID] else { return nil }
            record.process = box
            record.startedAt = .now
            record.info.pid = box.pid
            record.info.progressURL = url + "/v1/loading/progress"
            if record.info.state == .starting { record.info.state = .loading }
            records[workerID] = record
            return record.info
        }
        logger.info("worker spawned", metadata: ["worker_id": "\(workerID)", "model_path": "\(modelPath)", "pid": "\(box.pid)", "url": "\(url)"])
        return info ?? HiveWorkerInfo(
            workerID: workerID, modelID: "", url: url, progressURL: url + "/v1/loading/progress", pid: box.pid,
            state: .failed, slotsTotal: 0, slotsBusy: 0, queueDepth: 0, lastHeartbeatSAgo: nil, restarts: 0, exit: nil, error: nil,
            stderrTail: box.stderrTail)
    }

    /// A port in the range that no worker holds and that can be bound now; the record is created
    /// in the same step so two spawns never get the same port.
    private func reservePort(for workerID: String, modelID: String) -> Int? {
        records.withLock { records in
            let taken = Set(records.values.map(\.port))
            for port in settings.ports where !taken.contains(port) && Self.isFree(port: port) {
                let url = "http://127.0.0.1:\(port)"
                let now = ContinuousClock.now
                records[workerID] = Record(
                    info: HiveWorkerInfo(
                        workerID: workerID, modelID: modelID, url: url, progressURL: url + "/v1/loading/progress", pid: nil, state: .starting,
                        slotsTotal: 0, slotsBusy: 0, queueDepth: 0, lastHeartbeatSAgo: nil, restarts: 0, exit: nil, error: nil, stderrTail: nil),
                    process: nil, startedAt: now, lastHeartbeat: nil, lastActivity: now, lastProbe: now, port: port)
                return port
            }
            return nil
        }
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

    // MARK: Reports from workers

    /// `POST /v1/workers/ready`. Unknown workers get false (404), so orphans give up.
    func ready(_ report: WorkerReadyReport) -> Bool {
        records.withLock { records in
            guard var record = records[report.workerID] else { return false }
            record.info.state = report.state == .error ? .failed : .ready
            record.info.error = report.error
            record.info.slotsTotal = report.slotsTotal
            record.lastHeartbeat = .now
            record.lastActivity = .now
            records[report.workerID] = record
            return true
        }.also { known in
            guard known else { return }
            if report.state == .error {
                logger.error("worker failed to load", metadata: ["worker_id": "\(report.workerID)", "error": "\(report.error ?? "")"])
                // A worker without a model only answers 503: end its process, keep the record.
                Task { _ = await self.stop(report.workerID, reason: "failed to load") }
            } else {
                logger.info("worker ready", metadata: ["worker_id": "\(report.workerID)"])
            }
        }
    }

    /// `POST /v1/workers/heartbeat`.
    func heartbeat(_ beat: WorkerHeartbeat) -> Bool {
        records.withLock { records in
            guard var record = records[beat.workerID], record.info.state != .stopped, record.info.state != .failed else { return false }
            record.lastHeartbeat = .now
            record.info.slotsTotal = beat.slotsTotal
            record.info.slotsBusy = beat.slotsBusy
            record.info.queueDepth = beat.queueDepth
            let jobs = beat.jobsAccepted ?? record.jobsAccepted
            if jobs != record.jobsAccepted || beat.slotsBusy > 0 || beat.queueDepth > 0 { record.lastActivity = .now }
            record.jobsAccepted = jobs
            records[beat.workerID] = record
            return true
        }
    }

    // MARK: Ending

    private func exited(_ workerID: String, status: String) {
        let (expected, tail): (Bool, String?) = records.withLock { records in
            guard var record = records[workerID] else { return (true, nil) }
            record.info.exit = status
            record.info.stderrTail = record.process?.stderrTail
            if record.stopRequested {
                if record.info.state != .failed { record.info.state = .stopped }
            } else {
                record.info.state = .failed
                record.info.error = record.info.error ?? "WORKER_CRASHED: the worker process ended (\(status))"
            }
            records[workerID] = record
            return (record.stopRequested, record.info.stderrTail)
        }
        if expected {
            logger.info("worker stopped", metadata: ["worker_id": "\(workerID)", "exit": "\(status)"])
        } else {
            logger.error("worker crashed", metadata: ["worker_id": "\(workerID)", "exit": "\(status)", "stderr_tail": "\(tail ?? "")"])
        }
    }

    /// SIGTERM, then SIGKILL after the grace period; returns once the process has ended.
    public func stop(_ workerID: String, reason: String) async -> Bool {
        let (known, box): (Bool, ProcessBox?) = records.withLock { records in
            guard var record = records[workerID] else { return (false, nil) }
            record.stopRequested = true
            if record.info.state != .failed && record.info.state != .stopped {
                // Still waiting for its model: there is no process to stop.
                record.info.state = record.process == nil ? .stopped : .stopping
            }
            records[workerID] = record
            return (true, record.process)
        }
        guard let box else { return known }
        logger.info("stopping worker", metadata: ["worker_id": "\(workerID)", "reason": "\(reason)"])
        await box.stop(grace: settings.stopGrace, logger: logger)
        return true
    }

    /// Forgets a worker that has ended.
    func remove(_ workerID: String) {
        records.withLock { _ = $0.removeValue(forKey: workerID) }
    }

    /// Stops every worker in parallel; logs progress n/N.
    public func stopAll() async {
        let ids = records.withLock { Array($0.keys) }
        guard !ids.isEmpty else { return }
        await withTaskGroup(of: Void.self) { group in
            for id in ids {
                group.addTask { _ = await self.stop(id, reason: "hive shutdown") }
            }
            var stopped = 0
            for await _ in group {
                stopped += 1
                logger.info("shutdown progress", metadata: ["stopped": "\(stopped)/\(ids.count)"])
            }
        }
    }

    // MARK: Watching

    /// Runs until cancelled: checks every worker once a second.
    func watch(client: HTTPClient) async {
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(1))
            await checkAll(client: client)
        }
    }

    private func checkAll(client: HTTPClient) async {
        let now = ContinuousClock.now
        let snapshot = records.withLock { $0 }
        for (id, record) in snapshot {
            switch record.info.state {
            case .loading where now - record.startedAt > settings.loadingTimeout:
                setError(id, "LOADING_TIMEOUT: not loaded within \(settings.loadingTimeout)")
                _ = await stop(id, reason: "loading timeout")
            case .ready:
                let silent = now - (record.lastHeartbeat ?? record.startedAt)
                if silent > settings.heartbeatInterval * 3 {
                    _ = await stop(id, reason: "no heartbeat for \(silent)")
                    remove(id)
                } else if now - record.lastActivity > settings.idleTimeout {
                    _ = await stop(id, reason: "idle for \(settings.idleTimeout)")
                    remove(id)
                } else if now - record.lastProbe >= settings.healthProbeInterval {
                    let healthy = await probe(record.info.url, client: client)
                    let failures = records.withLock { records -> Int in
                        guard var record = records[id] else { return 0 }
                        record.lastProbe = .now
                        record.probeFailures = healthy ? 0 : record.probeFailures + 1
                        records[id] = record
                        return record.probeFailures
                    }
                    if failures >= 3 {
                        _ = await stop(id, reason: "3 failed health probes")
                        remove(id)
                    }
                }
            case .stopped:
                remove(id)
            default:
                break
            }
        }
    }

    private func setError(_ id: String, _ message: String) {
        records.withLock { $0[id]?.info.error = message }
    }

    private func probe(_ url: String, client: HTTPClient) async -> Bool {
        guard let response = try? await client.execute(HTTPClientRequest(url: url + "/health"), timeout: .seconds(3)) else { return false }
        _ = try? await response.body.collect(upTo: 64 * 1024)
        return response.status.code == 200
    }
}

extension Bool {
    fileprivate func also(_ body: (Bool) -> Void) -> Bool {
        body(self)
        return self
    }
}
