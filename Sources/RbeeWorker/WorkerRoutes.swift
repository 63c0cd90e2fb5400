import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Logging
import NIOFoundationCompat
import RbeeAPI
import RbeeHTTP
import RbeeInference

/// The worker's HTTP API (SPEC §3 "Worker"). Handlers validate and enqueue, never run inference.
struct WorkerRoutes: Sendable {
    let configuration: WorkerConfiguration
    let engine: Engine
    let metrics: WorkerMetrics
    let shutdown: ShutdownSwitch
    let startedAt = ContinuousClock.now

    func register(on router: Router<RbeeRequestContext>) {
        router.get("/health") { _, _ in health() }
        router.get("/v1/ready") { _, _ in readiness() }
        router.get("/v1/loading/progress") { request, context in loadingProgress(request, context) }
        router.post("/v1/inference") { request, context in try await infer(request, context: context) }
        router.post("/apply-template") { request, context in try await applyTemplate(request, context: context) }
        router.delete("/v1/inference/{job_id}") { _, context in try cancel(context) }
        router.post("/v1/shutdown") { _, context in requestShutdown(context) }
        router.get("/metrics") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                body: ResponseBody(byteBuffer: ByteBuffer(string: metrics.render(engine.snapshot()))))
        }
    }

    func health() -> Response {
        let snapshot = engine.snapshot()
        return .json(
            WorkerHealth(
                status: snapshot.state == .error ? "error" : "ok", workerID: configuration.workerID, model: configuration.engine.modelName,
                state: snapshot.state, slotsTotal: snapshot.slotsTotal, slotsBusy: snapshot.slotsBusy, queueDepth: snapshot.queueDepth,
                uptimeS: (ContinuousClock.now - startedAt).milliseconds / 1000, memoryBytes: ProcessMemory.residentBytes(),
                pid: getpid(), chatTemplate: engine.model?.chatTemplate, promptCache: snapshot.promptCache))
    }

    /// llama-server's `/apply-template`: the prompt a chat request's `messages` become, without
    /// generating; the body is an inference request's.
    func applyTemplate(_ request: Request, context: RbeeRequestContext) async throws -> Response {
        var request = request
        let inference = try await request.decodeBody(as: InferenceRequest.self, context: context)
        guard case .messages = inference.prompt else {
            throw RbeeError.invalid([.init(field: "messages", message: "required: /apply-template renders messages, not a prompt")])
        }
        return .json(AppliedTemplate(prompt: try await engine.renderPrompt(inference).prompt))
    }

    func readiness() -> Response {
        let snapshot = engine.snapshot()
        return .json(
            WorkerReadiness(
                ready: snapshot.state == .ready || snapshot.state == .busy, state: snapshot.state,
                progressURL: snapshot.state == .loading ? "/v1/loading/progress" : nil, error: snapshot.error?.message))
    }

    func loadingProgress(_ request: Request, _ context: RbeeRequestContext) -> Response {
        let frames = ProgressFrames(engine.loading.subscribe())
        return EventStreamResponse.make(request: request, context: context, keepAlive: configuration.keepAliveInterval, frames: frames)
    }

    func infer(_ request: Request, context: RbeeRequestContext) async throws -> Response {
        var request = request
        let inference = try await request.decodeBody(as: InferenceRequest.self, context: context)
        let deadline = try RequestDeadline.parse(request.headers)
        let jobID = inference.jobID ?? "job-" + UUID().uuidString.lowercased()
        let events: AsyncStream<EngineOutput>
        do {
            events = try await engine.submit(inference, jobID: jobID, deadline: deadline)
        } catch {
            metrics.recordRejected()
            throw error
        }
        context.logger.info("inference accepted", metadata: ["job_id": "\(jobID)", "stream": "\(inference.stream)"])

        if inference.stream {
            let frames = InferenceEventFrames(events: events, metrics: metrics, jobID: jobID, logger: context.logger)
            // Keep-alive ticks come from the engine, inside the stream itself.
            return EventStreamResponse.make(request: request, context: context, keepAlive: nil, frames: frames) { [engine] in
                engine.cancel(jobID: jobID)
            }
        }
        defer { engine.cancel(jobID: jobID) }
        let result = try await request.body.consumeWithCancellationOnInboundClose { _ in
            await collect(events, jobID: jobID, logger: context.logger)
        }
        // Disconnect detection consumed the request side: the connection closes after this.
        var response: Response
        switch result {
        case .success(let value): response = .json(value)
        case .failure(let error): response = .error(error, correlationID: context.correlationID)
        }
        response.headers[.connection] = "close"
        return response
    }

    /// Gathers a whole generation for `stream: false`.
    private func collect(_ events: AsyncStream<EngineOutput>, jobID: String, logger: Logger) async -> Result<InferenceResult, RbeeError> {
        var text = ""
        var reasoning = ""
        var calls: [ToolCall] = []
        for await output in events {
            guard case .event(let event) = output else { continue }
            switch event {
            case .started: continue
            case .token(let piece, _): text += piece
            case .reasoning(let piece, _): reasoning += piece
            case .toolCall(let delta): calls.apply(delta)
            case .end(let stats):
                metrics.record(terminal: event)
                InferenceEventFrames.logEnd(event, jobID: jobID, logger: logger)
                return .success(
                    InferenceResult(jobID: jobID, model: configuration.engine.modelName, text: text, reasoning: reasoning, toolCalls: calls, stats: stats))
            case .error(let error):
                metrics.record(terminal: event)
                InferenceEventFrames.logEnd(event, jobID: jobID, logger: logger)
                return .failure(error)
            }
        }
        return .failure(RbeeError(.internalError, "the engine closed the stream without a result"))
    }

    func cancel(_ context: RbeeRequestContext) throws -> Response {
        let jobID = context.parameters.get("job_id") ?? ""
        guard Validation.isValidID(jobID) else {
            throw RbeeError.invalid([.init(field: "job_id", message: "must match [A-Za-z0-9._-]{1,64}")])
        }
        engine.cancel(jobID: jobID)
        context.logger.info("inference cancelled", metadata: ["job_id": "\(jobID)"])
        return Response(status: .noContent)
    }

    func requestShutdown(_ context: RbeeRequestContext) -> Response {
        context.logger.info("shutdown requested over HTTP")
        engine.beginDrain()
        shutdown.request()
        return .json(["status": "draining"], status: .accepted)
    }
}


/// `X-Request-Deadline` (RFC 3339): a passed deadline is refused with 408 before any work.
enum RequestDeadline {
    static let header = HTTPField.Name("X-Request-Deadline")!

    static func parse(_ headers: HTTPFields) throws(RbeeError) -> ContinuousClock.Instant? {
        guard let value = headers[header] else { return nil }
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        guard let date = formatter.date(from: value) ?? ISO8601DateFormatter().date(from: value) else {
            throw RbeeError.invalid([.init(field: "X-Request-Deadline", message: "must be an RFC 3339 timestamp, got \(value)")])
        }
        let remaining = date.timeIntervalSinceNow
        guard remaining > 0 else {
            throw RbeeError(.deadlineExceeded, "the request deadline \(value) has passed", details: ["deadline": .string(value)])
        }
        return ContinuousClock.now + .milliseconds(Int64(remaining * 1000))
    }
}

/// Resident memory of this process, from `/proc/self/statm`.
enum ProcessMemory {
    static func residentBytes() -> Int {
        guard let statm = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
        let fields = statm.split(separator: " ")
        guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }
}
