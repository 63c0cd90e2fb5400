import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import RbeeAPI
import RbeeHTTP
import Synchronization
import RbeeTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A queen and hives as separate processes, each hive with its own RBEE_HOME, standing in for
/// machines of a network.
struct Cluster {
    let queen: Daemon
    let queenHome: String
    var hives: [String: Daemon]
    var hiveHomes: [String: String]
    let heartbeatSecs: Double

    /// `hives`: name → extra arguments and environment of that hive.
    static func start(
        hives specs: [(name: String, arguments: [String], environment: [String: String])], queenArguments: [String] = [],
        heartbeatSecs: Double = 1, queenHome: String? = nil
    ) async throws -> Cluster {
        let queenHome = try queenHome ?? temporaryHome()
        let queenPort = freePort()
        let queenURL = "http://127.0.0.1:\(queenPort)"
        let queen = try Daemon(
            binary(named: "queen-rbee"),
            ["--port", "\(queenPort)", "--home", queenHome, "--hive-heartbeat-secs", "\(heartbeatSecs)", "--keep-alive-secs", "1", "--no-local-hive"]
                + queenArguments, url: queenURL, log: queenHome + "/queen-\(queenPort).log")
        try await queen.waitHealthy()
        var cluster = Cluster(queen: queen, queenHome: queenHome, hives: [:], hiveHomes: [:], heartbeatSecs: heartbeatSecs)
        for spec in specs {
            let home = try temporaryHome()
            let port = freePort()
            let hive = try Daemon(
                binary(named: "rbee-hive"),
                [
                    "serve", "--port", "\(port)", "--home", home, "--name", spec.name, "--queen-url", queenURL, "--heartbeat-secs", "\(heartbeatSecs)",
                    "--worker-binary", binary(named: "llm-worker-rbee"),
                ] + spec.arguments, url: "http://127.0.0.1:\(port)", log: home + "/hive.log", environment: spec.environment)
            try await hive.waitHealthy()
            cluster.hives[spec.name] = hive
            cluster.hiveHomes[spec.name] = home
        }
        // Registered once each hive's first heartbeat has arrived.
        let names = Set(specs.map(\.name))
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            let online = Set(try await cluster.hiveList().filter { $0.status == .online }.map(\.name))
            if names.isSubset(of: online) { return cluster }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw DaemonError("hives did not register: \(queen.tail())")
    }

    func stop() async {
        await queen.stop()
        for hive in hives.values { await hive.stop() }
    }

    func hiveList() async throws -> [HiveRecord] {
        struct List: Decodable { var hives: [HiveRecord] }
        return try await get(queen.url + "/v1/hives", as: List.self).hives
    }

    func workers() async throws -> [ClusterWorker] {
        struct List: Decodable { var workers: [ClusterWorker] }
        return try await get(queen.url + "/v1/workers", as: List.self).workers
    }
}

/// A task stream read to its end, each event with its arrival time.
struct TaskTranscript: Sendable {
    var status: Int
    var headers: HTTPHeaders
    var sentAt: ContinuousClock.Instant
    var events: [(event: TaskEvent, at: ContinuousClock.Instant)] = []
    var comments: [String] = []
    var done = false
    var body = Data()

    var terminal: TaskEvent? { events.last(where: { $0.event.isTerminal })?.event }
    var text: String {
        events.compactMap { if case .token(let text, _) = $0.event { text } else { nil } }.joined()
    }
    var tokenCount: Int { events.filter { if case .token = $0.event { true } else { false } }.count }
    var firstTokenAfter: Duration? {
        events.first { if case .token = $0.event { true } else { false } }.map { $0.at - sentAt }
    }
    /// One terminal event, last, followed by `[DONE]`.
    var endsProperly: Bool {
        done && events.filter(\.event.isTerminal).count == 1 && events.last?.event.isTerminal == true
    }
    var stages: [String] {
        var stages: [String] = []
        for (event, _) in events {
            let stage: String =
                switch event {
                case .queued: "queued"
                case .downloading: "downloading"
                case .loading: "loading"
                case .started: "started"
                case .token: "token"
                case .reasoning: "reasoning"
                case .toolCall: "tool_call"
                case .end: "end"
                case .error: "error"
                }
            if stages.last != stage { stages.append(stage) }
        }
        return stages
    }
}

/// Posts a native task and reads the stream to its end; `onEvent` may act mid-stream.
func runTask(
    _ queenURL: String, json: String, timeout: Duration = .seconds(120), headers: [(String, String)] = [],
    onEvent: @Sendable (TaskEvent) async -> Void = { _ in }
) async throws -> TaskTranscript {
    var request = HTTPClientRequest(url: queenURL + "/v2/tasks")
    request.method = .POST
    request.headers.add(name: "Content-Type", value: "application/json")
    for (name, value) in headers { request.headers.add(name: name, value: value) }
    request.body = .bytes(ByteBuffer(string: json))
    let sentAt = ContinuousClock.now
    let response = try await http.execute(request, timeout: .seconds(30))
    var transcript = TaskTranscript(status: Int(response.status.code), headers: response.headers, sentAt: sentAt)
    guard response.status == .ok else {
        transcript.body = Data(buffer: try await response.body.collect(upTo: 1 << 20))
        return transcript
    }
    var reader = EventStreamReader(response: response)
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline, let message = try await reader.next() {
        switch message {
        case .comment(let text): transcript.comments.append(text)
        case .data("[DONE]"): transcript.done = true
        case .data(let json):
            let event = try JSONDecoder().decode(TaskEvent.self, from: Data(json.utf8))
            transcript.events.append((event, .now))
            await onEvent(event)
        }
    }
    return transcript
}

/// A greedy task; without prompt reuse, so the same task gives the same text on every worker and
/// every time (a cache hit evaluates the prompt in other chunks).
func taskJSON(_ model: String, prompt: String = "The capital of France is", maxTokens: Int = 8, extra: String = "") -> String {
    "{\"model\":\"\(model)\",\"prompt\":\"\(prompt)\",\"max_tokens\":\(maxTokens),\"seed\":7,\"temperature\":0,\"cache_prompt\":false\(extra.isEmpty ? "" : "," + extra)}"
}
