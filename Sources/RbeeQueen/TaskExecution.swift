import AsyncHTTPClient
import Foundation
import Logging
import NIOHTTP1
import RbeeAPI
import RbeeHTTP
import Synchronization

/// One task from its admission to its terminal event. It runs inside its response, as a
/// structured child of the request: a client that goes away cancels it, and `TaskControl` stops
/// it with a reason (`DELETE`, the deadline, the queen's drain). Whichever way it ends, its
/// `TaskEmitter` gets exactly one terminal event.
///
/// Where it runs is the `PlacementStateMachine`'s decision: the execution follows each lease —
/// the cold start of a worker that is not ready (download, then loading progress), then the
/// worker's stream — and reports how it went; the machine answers with the next lease (another
/// hive after a failed cold start, one replacement worker before the first token) or the error.
struct TaskExecution: Sendable {
    typealias Lease = PlacementStateMachine.Lease

    /// What the leased worker is asked for.
    enum Work: Sendable {
        /// The generation, its tokens relayed as they come.
        case generation
        /// The prompt the worker's chat template makes of the messages (`/apply-template`), sent
        /// as the task's one text output; nothing is generated.
        case templateRendering
    }

    let task: QueenTask
    var work: Work = .generation
    let placement: Placement
    let registration: RunningTasks.Registration
    let emitter = TaskEmitter()
    let scheduler: Scheduler
    let hives: HiveClient
    let http: HTTPClient
    let token: String?
    let background: BackgroundTasks
    let keepAliveInterval: Duration
    let stallTimeout: Duration
    let metrics: QueenMetrics
    let logger: Logger

    var control: TaskControl { registration.control }
    var outputs: AsyncStream<TaskOutput> { emitter.outputs }

    /// Runs the task to its terminal event. Returns when the work has ended, or at once after a
    /// stop: the work is then cancelled and ends with the event its reason calls for.
    func run() async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await perform() }
            group.addTask { await control.stopped() }
            group.addTask { await tick() }
            _ = await group.next()
            group.cancelAll()
        }
        emitter.emit(.error(RbeeError(.internalError, "the task ended without a result")))
    }

    // MARK: The work

    private func perform() async {
        var log = logger
        log[metadataKey: "correlation_id"] = .string(task.correlationID)
        log[metadataKey: "task_id"] = .string(task.id)
        var servedBy: String?
        do {
            emitter.emit(.queued(position: placement.placeInLine))
            var lease = try await placement.lease()
            var attempt = 1
            while true {
                servedBy = lease.modelID
                var workerURL = lease.url
                if !lease.ready {
                    do {
                        workerURL = try await warmUp(lease)
                        scheduler.workerReady(lease.workerID, url: workerURL)
                    } catch let error as RbeeError where !Task.isCancelled {
                        lease = try await placement.coldStartFailed(lease, error: error, logger: log)
                        continue
                    }
                }
                let outcome =
                    switch work {
                    case .generation: await relay(lease, at: workerURL, jobID: attempt == 1 ? task.id : "\(task.id)-\(attempt)")
                    case .templateRendering: await render(lease, at: workerURL)
                    }
                switch outcome {
                case .finished where work == .templateRendering:
                    placement.finished(lease, tokensPerSec: nil)
                    return
                case .finished(let stats):
                    placement.finished(lease, tokensPerSec: stats.tokensPerSec)
                    metrics.taskFinished(model: lease.modelID, hive: lease.hive, ttftMs: stats.ttftMs, tokens: stats.tokensOut, tokensPerSec: stats.tokensPerSec)
                    return
                case .failed(let error, let replaceable, let lost):
                    attempt += 1
                    let failed = lease
                    lease = try await placement.workerFailed(failed, error: error, replaceable: replaceable, workerLost: lost)
                    log.warning(
                        "worker failed before the first token; retrying once elsewhere",
                        metadata: ["worker_id": "\(failed.workerID)", "next_worker_id": "\(lease.workerID)", "error": "\(error)"])
                case .cancelled:
                    throw CancellationError()
                }
            }
        } catch let error as RbeeError where !Task.isCancelled {
            metrics.taskFailed(model: servedBy, code: error.code, streamed: task.request.stream)
            emitter.emit(.error(error))
        } catch {
            scheduler.cancel(placement.id)
            switch control.reason {
            case .deadline?:
                metrics.taskFailed(model: servedBy, code: .deadlineExceeded, streamed: task.request.stream)
                emitter.emit(.error(RbeeError(.deadlineExceeded, "the request deadline passed before it finished")))
            case .cancelRequested?:
                emitter.emit(
                    .end(GenerationStats(tokensOut: emitter.tokensSent, promptTokens: 0, ttftMs: 0, decodeMs: 0, tokensPerSec: 0, stopReason: .cancelled)))
            case .shutdown?:
                metrics.taskFailed(model: servedBy, code: .unavailable, streamed: task.request.stream)
                emitter.emit(.error(RbeeError(.unavailable, "the queen is shutting down", retryAfter: 1)))
            case nil:
                emitter.emit(.error(RbeeError(.cancelled, "the client went away")))
            }
        }
    }

    /// Keep-alives while nothing else is sent (queue, download, load), and the deadline: while a
    /// worker relays it enforces the deadline itself, with 2 s to say so before the queen does.
    private func tick() async {
        let interval = min(keepAliveInterval, .milliseconds(250))
        while !Task.isCancelled {
            try? await Task.sleep(for: interval)
            if Task.isCancelled { return }
            if emitter.silentFor >= keepAliveInterval { emitter.keepAlive() }
            if let deadline = task.deadline, Date() > deadline.addingTimeInterval(emitter.isRelaying ? 2 : 0) {
                control.stop(.deadline)
            }
        }
    }

    // MARK: Cold start

    /// Follows a worker that is not ready yet: the hive's download, then the worker's loading (as
    /// the hive relays it). Returns the URL the worker listens on, once it is ready.
    private func warmUp(_ lease: Lease) async throws -> String {
        let client = RbeeClient(
            http: http, token: token, correlationID: task.correlationID, deadline: task.deadlineHeader, unreachableCode: .hiveUnreachable)
        var followedDownload = false
        while true {
            try Task.checkCancellation()
            let workers = try await hives.workers(hiveURL: lease.hiveURL, correlationID: task.correlationID, deadline: task.deadlineHeader)
            guard let info = workers.first(where: { $0.workerID == lease.workerID }) else {
                throw RbeeError(.workerCrashed, "worker \(lease.workerID) disappeared from hive \(lease.hive) while starting")
            }
            switch info.state {
            case .ready:
                return info.url
            case .failed, .stopped, .stopping:
                var error = info.error ?? RbeeError(.workerCrashed, "the worker process ended (\(info.exit ?? "stopped"))")
                error.details["hive"] = .string(lease.hive)
                error.details["worker_id"] = .string(lease.workerID)
                throw error.prefixed("hive \(lease.hive)")
            case .starting:
                if !followedDownload, let range = info.progressURL.range(of: "/v1/models/download/progress") {
                    followedDownload = true
                    try await followDownload(lease.hiveURL + info.progressURL[range.lowerBound...], client: client, lease: lease)
                } else {
                    try await Task.sleep(for: .milliseconds(100))
                }
            case .loading:
                if try await followLoading(lease, client: client), !info.url.isEmpty { return info.url }
            }
        }
    }

    private func followDownload(_ url: String, client: RbeeClient, lease: Lease) async throws {
        for try await message in try await client.stream(.GET, url).events(of: DownloadProgress.self) {
            guard case .event(let progress) = message else { continue }
            switch progress {
            case .downloading(let bytes, let total, let speed, let eta, let attempt):
                emitter.emit(
                    .downloading(
                        hive: lease.hive, model: lease.modelID, bytesDownloaded: bytes, bytesTotal: total, speedMBps: speed, etaS: eta, attempt: attempt))
            case .complete(_, _, let size):
                emitter.emit(.downloading(hive: lease.hive, model: lease.modelID, bytesDownloaded: size, bytesTotal: size, speedMBps: 0, etaS: 0))
                await scheduler.refreshCatalog(hive: lease.hive, url: lease.hiveURL, correlationID: task.correlationID)
            case .failed(let error):
                var error = error
                error.details["hive"] = .string(lease.hive)
                throw error.prefixed("hive \(lease.hive)")
            }
        }
    }

    /// Relays the worker's loading progress as its hive relays it (so a worker that dies while
    /// loading ends it with `WORKER_CRASHED`); true once it is ready. A hive that cannot be read
    /// leaves the decision to its worker list, polled by the caller.
    private func followLoading(_ lease: Lease, client: RbeeClient) async throws -> Bool {
        guard let reader = try? await client.stream(.GET, lease.hiveURL + "/v1/workers/\(lease.workerID)/progress", timeout: .seconds(5)) else {
            try await Task.sleep(for: .milliseconds(100))
            return false
        }
        for try await message in reader.events(of: LoadingProgress.self) {
            guard case .event(let progress) = message else { continue }
            switch progress {
            case .loading(let loaded, let total, _, _):
                emitter.emit(.loading(hive: lease.hive, workerID: lease.workerID, layersLoaded: loaded, layersTotal: total))
            case .ready:
                return true
            case .failed(let error):
                var error = error
                error.details["hive"] = .string(lease.hive)
                error.details["worker_id"] = .string(lease.workerID)
                throw error.prefixed("worker \(lease.workerID) on hive \(lease.hive) could not load the model")
            }
        }
        return false
    }

    // MARK: Relaying the worker's stream

    enum RelayOutcome: Sendable {
        case finished(GenerationStats)
        /// `replaceable`: nothing reached the client yet, another worker may serve it; `lost`: the
        /// worker is gone or broken.
        case failed(RbeeError, replaceable: Bool, lost: Bool)
        case cancelled
    }

    private func relay(_ lease: Lease, at workerURL: String, jobID: String) async -> RelayOutcome {
        var request = task.request
        request.jobID = jobID
        request.stream = true
        let client = RbeeClient(
            http: http, token: token, correlationID: task.correlationID, deadline: task.deadlineHeader, unreachableCode: .workerCrashed)
        let reader: EventStreamReader
        do {
            reader = try await client.stream(.POST, workerURL + "/v1/inference", json: try JSONEncoder().encode(request.json))
        } catch let error as RbeeError where !Task.isCancelled {
            switch error.code {
            case .workerCrashed: return .failed(error, replaceable: true, lost: true)
            case .allSlotsBusy, .unavailable: return .failed(error, replaceable: true, lost: false)
            default: return .failed(error, replaceable: false, lost: false)
            }
        } catch {
            return .cancelled
        }
        emitter.isRelaying = true
        defer { emitter.isRelaying = false }
        let watch = UpstreamWatch()
        let outcome = await withTaskGroup(of: RelayOutcome?.self) { group in
            group.addTask { [response = reader.response, origin = reader.origin] in
                await read(EventStreamReader(response: response, origin: origin), lease: lease, watch: watch)
            }
            group.addTask {
                // No event and no keep-alive from the worker for the stall timeout.
                while !Task.isCancelled {
                    try? await Task.sleep(for: min(stallTimeout / 6, .milliseconds(500)))
                    if watch.silentFor > stallTimeout {
                        return .failed(
                            RbeeError(.streamStalled, "worker \(lease.workerID) sent nothing for \(Int(stallTimeout.milliseconds / 1000)) s"),
                            replaceable: false, lost: false)
                    }
                }
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first ?? .cancelled
        }
        switch outcome {
        case .cancelled: cancelJob(jobID, at: workerURL)
        case .failed(let error, _, _) where error.code == .streamStalled: cancelJob(jobID, at: workerURL)
        default: break
        }
        return outcome
    }

    /// The worker's rendering of the task's messages: `started`, the prompt as one text output,
    /// `end`. A worker that cannot be reached may be replaced, as for a relay.
    private func render(_ lease: Lease, at workerURL: String) async -> RelayOutcome {
        let client = RbeeClient(
            http: http, token: token, correlationID: task.correlationID, deadline: task.deadlineHeader, unreachableCode: .workerCrashed)
        do {
            let rendered = try await client.call(
                .POST, workerURL + "/apply-template", json: try JSONEncoder().encode(task.request.json), timeout: .seconds(30), as: AppliedTemplate.self)
            let queenMs = (ContinuousClock.now - task.arrivedAt).milliseconds
            emitter.emit(.started(taskID: task.id, model: lease.modelID, hive: lease.hive, workerID: lease.workerID, queueMs: queenMs))
            emitter.emit(.token(text: rendered.prompt, index: 0))
            let stats = GenerationStats(tokensOut: 0, promptTokens: 0, ttftMs: 0, decodeMs: 0, tokensPerSec: 0, stopReason: .eos)
            emitter.emit(.end(stats))
            return .finished(stats)
        } catch let error as RbeeError where !Task.isCancelled {
            let replaceable = [.workerCrashed, .allSlotsBusy, .unavailable].contains(error.code)
            return .failed(error, replaceable: replaceable, lost: error.code == .workerCrashed)
        } catch {
            return .cancelled
        }
    }

    /// Asks the worker to cancel the job. It runs in the queen's background tasks: the relay that
    /// asks may itself be cancelled, and the worker's slot must be freed even when a client left.
    private func cancelJob(_ jobID: String, at workerURL: String) {
        let client = RbeeClient(http: http, token: token, correlationID: task.correlationID, unreachableCode: .workerCrashed)
        background.submit { _ = try? await client.call(.DELETE, workerURL + "/v1/inference/" + jobID, timeout: .seconds(5)) }
    }

    /// The reading side of a relay, a child task beside the stall watch.
    private func read(_ reader: EventStreamReader, lease: Lease, watch: UpstreamWatch) async -> RelayOutcome {
        var tokens = 0
        do {
            for try await message in reader.events(of: InferenceEvent.self) {
                watch.touch()
                guard case .event(let event) = message else {
                    emitter.keepAlive()
                    continue
                }
                switch event {
                case .started(_, _, let queueMs):
                    let queenMs = (ContinuousClock.now - task.arrivedAt).milliseconds
                    emitter.emit(
                        .started(taskID: task.id, model: lease.modelID, hive: lease.hive, workerID: lease.workerID, queueMs: max(queueMs, queenMs)))
                case .token(let text, let index):
                    tokens += 1
                    emitter.emit(.token(text: text, index: index))
                case .reasoning(let text, let index):
                    tokens += 1
                    emitter.emit(.reasoning(text: text, index: index))
                case .toolCall(let delta):
                    tokens += 1
                    emitter.emit(.toolCall(delta))
                case .end(var stats):
                    stats.ttftMs = tokens == 0 ? 0 : (ContinuousClock.now - task.arrivedAt).milliseconds - stats.decodeMs
                    emitter.emit(.end(stats))
                    return .finished(stats)
                case .error(let error):
                    let replaceable = tokens == 0 && [.allSlotsBusy, .unavailable].contains(error.code)
                    return .failed(error, replaceable: replaceable, lost: false)
                }
            }
        } catch {
            if Task.isCancelled { return .cancelled }
            if let error = error as? RbeeError { return .failed(error, replaceable: false, lost: false) }
            return .failed(
                RbeeError(.workerCrashed, "the connection to worker \(lease.workerID) on hive \(lease.hive) broke: \(error)"),
                replaceable: tokens == 0, lost: true)
        }
        if Task.isCancelled { return .cancelled }
        return .failed(
            RbeeError(.workerCrashed, "worker \(lease.workerID) on hive \(lease.hive) ended the stream without a result"),
            replaceable: tokens == 0, lost: true)
    }
}

/// When the upstream of a relay last sent anything.
private final class UpstreamWatch: Sendable {
    private let last = Mutex(ContinuousClock.now)
    func touch() { last.withLock { $0 = .now } }
    var silentFor: Duration { ContinuousClock.now - last.withLock { $0 } }
}
