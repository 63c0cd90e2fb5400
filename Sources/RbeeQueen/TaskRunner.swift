import AsyncHTTPClient
import Foundation
import Logging
import NIOHTTP1
import RbeeAPI
import RbeeHTTP
import Synchronization

/// A task under way: its output stream and the ways to stop it.
final class TaskHandle: Sendable {
    let id: String
    let outputs: AsyncStream<TaskOutput>
    let emitter: TaskEmitter
    private let work = Mutex<Task<Void, Never>?>(nil)
    private let cancelJob: @Sendable (String, String) -> Void

    init(id: String, outputs: AsyncStream<TaskOutput>, emitter: TaskEmitter, cancelJob: @escaping @Sendable (String, String) -> Void) {
        self.id = id
        self.outputs = outputs
        self.emitter = emitter
        self.cancelJob = cancelJob
    }

    func attach(_ task: Task<Void, Never>) { work.withLock { $0 = task } }

    /// Stops the task. While a worker generates, the worker is asked to cancel the job (its
    /// `end {stop_reason: cancelled}` then ends the stream); before that, the wait is abandoned.
    func stop(_ reason: TaskStopReason) {
        guard emitter.stop(reason) else { return }
        if let job = emitter.currentJob {
            cancelJob(job.jobID, job.workerURL)
            if reason == .cancelRequested || reason == .deadline { return }
        }
        work.withLock { $0 }?.cancel()
    }
}

/// Runs tasks: admission and placement (`Scheduler`), the cold start of a worker (download and
/// loading progress relayed as events), then the worker's stream relayed to the client.
///
/// Every task ends with exactly one terminal event. A worker that dies before the first token is
/// replaced once by another; after it, the client gets `error WORKER_CRASHED`. An upstream silent
/// for 3 keep-alive intervals ends the task with `error STREAM_STALLED` and cancels the job.
final class TaskRunner: Sendable {
    private let scheduler: Scheduler
    private let registry: HiveRegistry
    private let hives: HiveClient
    private let http: HTTPClient
    private let token: String?
    private let keepAliveInterval: Duration
    private let stallTimeout: Duration
    private let metrics: QueenMetrics
    private let logger: Logger
    private let running = Mutex<[String: TaskHandle]>([:])

    init(
        scheduler: Scheduler, registry: HiveRegistry, hives: HiveClient, http: HTTPClient, token: String?, keepAliveInterval: Duration,
        stallTimeout: Duration, metrics: QueenMetrics, logger: Logger
    ) {
        self.scheduler = scheduler
        self.registry = registry
        self.hives = hives
        self.http = http
        self.token = token
        self.keepAliveInterval = keepAliveInterval
        self.stallTimeout = stallTimeout
        self.metrics = metrics
        self.logger = logger
    }

    var count: Int { running.withLock { $0.count } }

    func handle(_ id: String) -> TaskHandle? { running.withLock { $0[id] } }

    /// Starts `task`; its outputs end after one terminal event.
    func start(_ task: QueenTask, lease: Scheduler.Lease?) -> TaskHandle {
        let (outputs, continuation) = AsyncStream.makeStream(of: TaskOutput.self, bufferingPolicy: .unbounded)
        let emitter = TaskEmitter(continuation)
        let handle = TaskHandle(id: task.id, outputs: outputs, emitter: emitter) { [self] jobID, workerURL in
            let client = RbeeClient(http: http, token: token, correlationID: task.correlationID)
            Task.detached { _ = try? await client.call(.DELETE, workerURL + "/v1/inference/" + jobID, timeout: .seconds(5)) }
        }
        running.withLock { $0[task.id] = handle }
        metrics.taskStarted()
        let work = Task {
            await run(task, lease: lease, emitter: emitter)
            running.withLock { _ = $0.removeValue(forKey: task.id) }
        }
        handle.attach(work)
        Task { [keepAliveInterval] in
            // Keep-alives while nothing else is sent (queue, download, load), and the deadline
            // while no worker enforces it.
            let tick = min(keepAliveInterval, .milliseconds(250))
            while !emitter.isFinished {
                try? await Task.sleep(for: tick)
                if emitter.silentFor >= keepAliveInterval { emitter.keepAlive() }
                if let deadline = task.deadline, Date() > deadline, !emitter.isRelaying {
                    handle.stop(.deadline)
                }
            }
        }
        return handle
    }

    // MARK: One task

    private func run(_ task: QueenTask, lease admitted: Scheduler.Lease?, emitter: TaskEmitter) async {
        var want = task.want
        var admitted = admitted
        // Admitted without a lease: a place in the queue is reserved for the first acquire.
        var reservedPlace = admitted == nil
        var replacedWorker = false
        var attempt = 0
        var log = logger
        log[metadataKey: "correlation_id"] = .string(task.correlationID)
        log[metadataKey: "task_id"] = .string(task.id)
        defer {
            if !emitter.isFinished { emitter.emit(.error(code: ErrorCode.internalError.rawValue, message: "the task ended without a result")) }
        }
        do {
            while true {
                attempt += 1
                let lease: Scheduler.Lease
                if let first = admitted {
                    admitted = nil
                    lease = first
                    emitter.emit(.queued(position: 0))
                    if Task.isCancelled {
                        await scheduler.release(lease, tokensPerSec: nil)
                        throw CancellationError()
                    }
                } else {
                    let holdsPlace = reservedPlace
                    reservedPlace = false
                    lease = try await scheduler.acquire(want, admitted: holdsPlace) { position in emitter.emit(.queued(position: position)) }
                }
                if !lease.ready {
                    do {
                        try await warmUp(lease, task: task, emitter: emitter)
                        await scheduler.markReady(lease.workerID)
                    } catch let error as RbeeError {
                        await scheduler.release(lease, tokensPerSec: nil)
                        await scheduler.spawnFailed(modelID: lease.modelID, hive: lease.hive, error: error, workerID: lease.workerID)
                        log.warning("cold start failed; trying another hive", metadata: ["hive": "\(lease.hive)", "error": "\(error)"])
                        want.excludedHives.insert(lease.hive)
                        continue
                    } catch {
                        await scheduler.release(lease, tokensPerSec: nil)
                        throw error
                    }
                }
                let outcome = await relay(lease, task: task, jobID: attempt == 1 ? task.id : "\(task.id)-\(attempt)", emitter: emitter)
                switch outcome {
                case .finished(let stats):
                    metrics.taskFinished(model: task.model, hive: lease.hive, ttftMs: stats.ttftMs, tokens: stats.tokensOut, tokensPerSec: stats.tokensPerSec)
                    await scheduler.release(lease, tokensPerSec: stats.tokensPerSec)
                    return
                case .failed(let error, let retryable, let lost):
                    await scheduler.release(lease, tokensPerSec: nil)
                    if lost { await scheduler.workerLost(lease.workerID) }
                    if retryable, !replacedWorker {
                        replacedWorker = true
                        want.excludedWorkers.insert(lease.workerID)
                        log.warning("worker failed before the first token; retrying once elsewhere", metadata: ["worker_id": "\(lease.workerID)", "error": "\(error)"])
                        continue
                    }
                    metrics.taskFailed(model: task.model, code: error.code.rawValue)
                    emitter.emit(.error(code: error.code.rawValue, message: error.message))
                    return
                case .cancelled:
                    await scheduler.release(lease, tokensPerSec: nil)
                    throw CancellationError()
                }
            }
        } catch let error as RbeeError {
            metrics.taskFailed(model: task.model, code: error.code.rawValue)
            emitter.emit(.error(code: error.code.rawValue, message: error.message))
        } catch {
            switch emitter.stopReason {
            case .deadline?:
                metrics.taskFailed(model: task.model, code: ErrorCode.deadlineExceeded.rawValue)
                emitter.emit(.error(code: ErrorCode.deadlineExceeded.rawValue, message: "the request deadline passed before it finished"))
            case .cancelRequested?:
                emitter.emit(.end(GenerationStats(tokensOut: 0, promptTokens: 0, ttftMs: 0, decodeMs: 0, tokensPerSec: 0, stopReason: .cancelled)))
            default:
                emitter.emit(.error(code: ErrorCode.cancelled.rawValue, message: "the client went away"))
            }
        }
    }

    // MARK: Cold start

    /// Follows a worker that is not ready yet: the hive's download, then the worker's loading.
    private func warmUp(_ lease: Scheduler.Lease, task: QueenTask, emitter: TaskEmitter) async throws {
        let client = RbeeClient(http: http, token: token, correlationID: task.correlationID, unreachableCode: .hiveUnreachable)
        var followedDownload = false
        while true {
            try Task.checkCancellation()
            let workers = try await hives.workers(hiveURL: lease.hiveURL, correlationID: task.correlationID)
            guard let info = workers.first(where: { $0.workerID == lease.workerID }) else {
                throw RbeeError(.workerCrashed, "worker \(lease.workerID) disappeared from hive \(lease.hive) while starting")
            }
            switch info.state {
            case .ready:
                return
            case .failed, .stopped, .stopping:
                let detail = info.error ?? info.exit.map { "the worker process ended (\($0))" } ?? "the worker stopped"
                let code: ErrorCode = info.error.map { message in
                    ErrorCode.allCases.first { message.hasPrefix($0.rawValue) } ?? .modelLoadFailed
                } ?? .workerCrashed
                throw RbeeError(code, "hive \(lease.hive): \(detail)", details: ["hive": .string(lease.hive), "worker_id": .string(lease.workerID)])
            case .starting:
                if !followedDownload, let range = info.progressURL.range(of: "/v1/models/download/progress") {
                    followedDownload = true
                    let url = lease.hiveURL + info.progressURL[range.lowerBound...]
                    try await followDownload(url, client: client, lease: lease, emitter: emitter)
                } else {
                    try await Task.sleep(for: .milliseconds(100))
                }
            case .loading:
                if try await followLoading(lease: lease, client: client, emitter: emitter) { return }
            }
        }
    }

    private func followDownload(_ url: String, client: RbeeClient, lease: Scheduler.Lease, emitter: TaskEmitter) async throws {
        var reader = try await client.stream(.GET, url)
        while let message = try await reader.next() {
            guard case .data(let json) = message, json != "[DONE]",
                let progress = try? JSONDecoder().decode(DownloadProgress.self, from: Data(json.utf8))
            else { continue }
            switch progress {
            case .downloading(let bytes, let total, let speed, let eta):
                emitter.emit(.downloading(hive: lease.hive, model: lease.modelID, bytesDownloaded: bytes, bytesTotal: total, speedMBps: speed, etaS: eta))
            case .complete(_, _, let size):
                emitter.emit(.downloading(hive: lease.hive, model: lease.modelID, bytesDownloaded: size, bytesTotal: size, speedMBps: 0, etaS: 0))
            case .failed(let code, let message):
                throw RbeeError(ErrorCode(rawValue: code) ?? .downloadFailed, "hive \(lease.hive): \(message)", details: ["hive": .string(lease.hive)])
            }
        }
    }

    /// Relays the worker's loading progress; true once it is ready. The worker may not listen
    /// yet right after its launch: connection failures are retried for a while.
    private func followLoading(lease: Scheduler.Lease, client: RbeeClient, emitter: TaskEmitter) async throws -> Bool {
        var workerClient = client
        workerClient.unreachableCode = .workerCrashed
        var opened: EventStreamReader?
        do {
            opened = try await workerClient.stream(.GET, lease.url + "/v1/loading/progress", timeout: .seconds(5))
        } catch {
            opened = nil
        }
        guard var reader = opened else {
            // Not listening yet, or dead: the hive's view (polled by the caller) decides which.
            try await Task.sleep(for: .milliseconds(100))
            return false
        }
        while let message = try await reader.next() {
            guard case .data(let json) = message, json != "[DONE]",
                let progress = try? JSONDecoder().decode(LoadingProgress.self, from: Data(json.utf8))
            else { continue }
            switch progress {
            case .loading(let loaded, let total, _, _):
                emitter.emit(.loading(hive: lease.hive, workerID: lease.workerID, layersLoaded: loaded, layersTotal: total))
            case .ready:
                return true
            case .failed(let code, let message):
                throw RbeeError(
                    ErrorCode(rawValue: code) ?? .modelLoadFailed, "worker \(lease.workerID) on hive \(lease.hive) could not load the model: \(message)",
                    details: ["hive": .string(lease.hive), "worker_id": .string(lease.workerID)])
            }
        }
        return false
    }

    // MARK: Relaying the worker's stream

    enum RelayOutcome: Sendable {
        case finished(GenerationStats)
        /// `retryable`: nothing reached the client yet, another worker may serve it; `lost`: the
        /// worker is gone or broken.
        case failed(RbeeError, retryable: Bool, lost: Bool)
        case cancelled
    }

    private final class RelayState: Sendable {
        struct Values {
            var lastUpstream = ContinuousClock.now
            var tokens = 0
        }
        let values = Mutex(Values())
        func touch() { values.withLock { $0.lastUpstream = .now } }
        var silentFor: Duration { ContinuousClock.now - values.withLock { $0.lastUpstream } }
    }

    private func relay(_ lease: Scheduler.Lease, task: QueenTask, jobID: String, emitter: TaskEmitter) async -> RelayOutcome {
        var request = task.request
        request.jobID = jobID
        request.stream = true
        let body: Data
        do { body = try JSONEncoder().encode(request.json) } catch { return .failed(RbeeError(.internalError, "cannot encode the request"), retryable: false, lost: false) }
        let client = RbeeClient(
            http: http, token: token, correlationID: task.correlationID, deadline: task.deadlineHeader, unreachableCode: .workerCrashed)
        let response: HTTPClientResponse
        emitter.relaying(jobID: jobID, workerURL: lease.url)
        defer { emitter.relaying(jobID: nil, workerURL: nil) }
        do {
            response = try await client.stream(.POST, lease.url + "/v1/inference", json: body).response
        } catch {
            if Task.isCancelled { return .cancelled }
            switch error.code {
            case .workerCrashed: return .failed(error, retryable: true, lost: true)
            case .allSlotsBusy, .unavailable: return .failed(error, retryable: true, lost: false)
            default: return .failed(error, retryable: false, lost: false)
            }
        }
        let state = RelayState()
        let context = RelayContext(task: task, lease: lease, emitter: emitter, state: state)
        let stallTimeout = self.stallTimeout
        return await withTaskGroup(of: RelayOutcome?.self) { group in
            group.addTask { await context.read(response) }
            group.addTask {
                let tick = min(stallTimeout / 6, .milliseconds(500))
                while !Task.isCancelled {
                    try? await Task.sleep(for: tick)
                    if state.silentFor > stallTimeout {
                        return .failed(
                            RbeeError(.streamStalled, "worker \(lease.workerID) sent nothing for \(stallTimeout.milliseconds / 1000) s"),
                            retryable: false, lost: false)
                    }
                }
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            if case .failed(let error, _, _)? = first, error.code == .streamStalled {
                Task.detached { _ = try? await client.call(.DELETE, lease.url + "/v1/inference/" + jobID, timeout: .seconds(5)) }
            }
            return first ?? .cancelled
        }
    }

    /// The reading side of a relay, separate so it can run as a child task.
    private struct RelayContext: Sendable {
        let task: QueenTask
        let lease: Scheduler.Lease
        let emitter: TaskEmitter
        let state: RelayState

        func read(_ response: HTTPClientResponse) async -> RelayOutcome {
            var reader = EventStreamReader(response: response)
            var outcome: RelayOutcome?
            var tokens = 0
            let decoder = JSONDecoder()
            do {
                while let message = try await reader.next() {
                    state.touch()
                    guard case .data(let json) = message else {
                        emitter.keepAlive()
                        continue
                    }
                    if json == "[DONE]" { break }
                    guard let event = try? decoder.decode(InferenceEvent.self, from: Data(json.utf8)) else { continue }
                    switch event {
                    case .started(_, _, let queueMs):
                        let queenMs = (ContinuousClock.now - task.arrivedAt).milliseconds
                        emitter.emit(
                            .started(taskID: task.id, model: lease.modelID, hive: lease.hive, workerID: lease.workerID, queueMs: max(queueMs, queenMs)))
                    case .token(let text, let index):
                        tokens += 1
                        if tokens == 1 { state.values.withLock { $0.tokens = 1 } }
                        emitter.emit(.token(text: text, index: index))
                    case .end(var stats):
                        stats.ttftMs = (ContinuousClock.now - task.arrivedAt).milliseconds - stats.decodeMs
                        if tokens == 0 { stats.ttftMs = 0 }
                        emitter.emit(.end(stats))
                        outcome = .finished(stats)
                    case .error(let code, let message):
                        let error = RbeeError(ErrorCode(rawValue: code) ?? .internalError, message)
                        let retryable = tokens == 0 && [.allSlotsBusy, .unavailable].contains(error.code)
                        outcome = .failed(error, retryable: retryable, lost: false)
                    }
                }
            } catch {
                if Task.isCancelled { return .cancelled }
                return .failed(
                    RbeeError(.workerCrashed, "the connection to worker \(lease.workerID) on hive \(lease.hive) broke: \(error)"),
                    retryable: tokens == 0, lost: true)
            }
            if Task.isCancelled, outcome == nil { return .cancelled }
            return outcome
                ?? .failed(
                    RbeeError(.workerCrashed, "worker \(lease.workerID) on hive \(lease.hive) ended the stream without a result"),
                    retryable: tokens == 0, lost: true)
        }
    }
}
