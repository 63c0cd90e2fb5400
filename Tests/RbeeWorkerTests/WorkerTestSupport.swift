import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import RbeeAPI
import RbeeInference
import RbeeTestSupport
import RbeeWorker
import Synchronization
import Testing

/// A worker service running in this process on a free loopback port, over real HTTP.
struct RunningWorker: Sendable {
    let service: WorkerService
    let baseURL: String
    let task: Task<Void, any Error>

    static func start(model: String = modelPath, _ configure: (inout WorkerConfiguration) -> Void = { _ in }) async throws -> RunningWorker {
        var engine = EngineConfiguration(modelPath: model)
        engine.contextSize = 1024
        engine.threads = 2
        var configuration = WorkerConfiguration(engine: engine)
        configuration.port = 0
        configuration.keepAliveInterval = .milliseconds(200)
        configuration.drainGrace = .seconds(1)
        configure(&configuration)
        var logger = Logger(label: "test-worker")
        logger.logLevel = .warning
        let service = WorkerService(configuration: configuration, logger: logger)
        let task = Task { try await service.run(handleSignals: false) }
        let port = await service.port()
        return RunningWorker(service: service, baseURL: "http://127.0.0.1:\(port)", task: task)
    }

    /// Waits until the model is loaded (or failed).
    func waitLoaded() async {
        for await event in service.engine.loading.subscribe() where event.isTerminal { return }
    }
}

/// The worker most tests share: 4 slots, queue bound 64, keep-alive every 200 ms.
enum SharedWorker {
    private static let running = Task { try await RunningWorker.start() }

    static func get() async throws -> RunningWorker {
        let worker = try await running.value
        await worker.waitLoaded()
        return worker
    }
}

/// An SSE message with the time it arrived.
struct TimedMessage: Sendable {
    let at: ContinuousClock.Instant
    let message: SSE.Message

    var event: InferenceEvent? {
        guard case .data(let json) = message, json != "[DONE]" else { return nil }
        return try? JSONDecoder().decode(InferenceEvent.self, from: Data(json.utf8))
    }

    var isDone: Bool { message == .data("[DONE]") }
}

/// An open SSE response: its status, when headers arrived, and its messages as they come.
struct EventStreamClient {
    let response: HTTPClientResponse
    let sentAt: ContinuousClock.Instant
    let headersAt: ContinuousClock.Instant
    private var body: HTTPClientResponse.Body.AsyncIterator
    private var parser = SSEParser()
    private var ready: [SSE.Message] = []

    static func open(
        _ url: String, method: HTTPMethod = .POST, json: String? = nil, headers: [(String, String)] = []
    ) async throws -> EventStreamClient {
        var request = HTTPClientRequest(url: url)
        request.method = method
        if let json {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: json))
        }
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        let sentAt = ContinuousClock.now
        let response = try await http.execute(request, timeout: .seconds(120))
        return EventStreamClient(response: response, sentAt: sentAt, headersAt: .now, body: response.body.makeAsyncIterator())
    }

    /// The next message, or nil when the server closed the stream.
    mutating func next() async throws -> TimedMessage? {
        while ready.isEmpty {
            guard let chunk = try await body.next() else { return nil }
            ready = parser.feed(chunk.readableBytesView)
        }
        return TimedMessage(at: .now, message: ready.removeFirst())
    }

    /// Reads to the end: every message, and whether the stream was well-formed.
    mutating func collect() async throws -> StreamTranscript {
        var messages: [TimedMessage] = []
        while let message = try await next() { messages.append(message) }
        return StreamTranscript(messages: messages)
    }
}

/// A finished stream, checked against SPEC §2 rule 3.
struct StreamTranscript {
    let messages: [TimedMessage]

    var events: [InferenceEvent] { messages.compactMap(\.event) }
    var tokens: [(text: String, at: ContinuousClock.Instant)] {
        messages.compactMap { message in
            if case .token(let text, _)? = message.event { (text, message.at) } else { nil }
        }
    }
    var text: String { tokens.map(\.text).joined() }
    var terminal: InferenceEvent? { events.last(where: \.isTerminal) }
    var stats: GenerationStats? { if case .end(let stats)? = terminal { stats } else { nil } }
    var keepAlives: Int { messages.filter { $0.message == .comment("keep-alive") }.count }

    /// Exactly one terminal event, and `[DONE]` right after it as the last data message.
    var endsProperly: Bool {
        let data = messages.filter { if case .data = $0.message { true } else { false } }
        guard data.count >= 2, data.last?.isDone == true else { return false }
        return events.filter(\.isTerminal).count == 1 && data[data.count - 2].event?.isTerminal == true
    }
}

func health(_ worker: RunningWorker) async throws -> WorkerHealth {
    try decode(WorkerHealth.self, try await get(worker.baseURL + "/health").1)
}

/// A request body; `extra` is spliced in as further JSON fields.
func inferenceJSON(_ prompt: String, maxTokens: Int, extra: String = "") -> String {
    let quoted = String(decoding: try! JSONEncoder().encode(prompt), as: UTF8.self)
    return #"{"prompt":\#(quoted),"max_tokens":\#(maxTokens)\#(extra.isEmpty ? "" : "," + extra)}"#
}

/// Whether `task` ends (returns or throws) within `timeout`; the task itself is not cancelled.
/// Polls a flag: awaiting `task.value` in a task group could not be abandoned at the deadline.
func finishes(_ task: Task<Void, any Error>, within timeout: Duration) async -> Bool {
    let ended = EndFlag()
    Task {
        _ = try? await task.value
        ended.value.withLock { $0 = true }
    }
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if ended.value.withLock({ $0 }) { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return ended.value.withLock { $0 }
}

final class EndFlag: Sendable {
    let value = Mutex(false)
}
