import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat
import RbeeAPI
import RbeeHTTP
import Synchronization

/// Runs one task on the queen and shows it: tokens to stdout as they arrive; queue, download and
/// loading progress on the status line; a last line with tokens/s and time to first token.
final class TaskPrinter: Sendable {
    let connection: QueenConnection
    let status: StatusLine
    /// The task under way, for Ctrl-C.
    let current = Mutex<String?>(nil)

    init(connection: QueenConnection, status: StatusLine) {
        self.connection = connection
        self.status = status
    }

    struct Outcome: Sendable {
        var text: String
        var stats: GenerationStats?
        var cancelled: Bool
    }

    /// Streams `request` through `POST /v2/tasks`, cancelling it on the queen whenever
    /// `interrupts` yields (Ctrl-C); throws the server's error.
    func run(_ request: TaskRequest, cancelledBy interrupts: AsyncStream<Void>, showStats: Bool = true) async throws(RbeeError) -> Outcome {
        do {
            return try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { for await _ in interrupts { await self.cancel() } }
                defer { group.cancelAll() }
                return try await run(request, showStats: showStats)
            }
        } catch let error as RbeeError {
            throw error
        } catch {
            throw RbeeError(.internalError, "\(error)")
        }
    }

    private func run(_ request: TaskRequest, showStats: Bool) async throws(RbeeError) -> Outcome {
        let json: Data
        do { json = try JSONEncoder().encode(request) } catch { throw RbeeError(.internalError, "cannot encode the request") }
        let reader: EventStreamReader
        do {
            reader = try await connection.client.stream(.POST, connection.url + "/v2/tasks", json: json, timeout: .seconds(60))
        } catch {
            throw await connection.explained(error)
        }
        current.withLock { $0 = reader.response.headers.first(name: "X-Task-Id") }
        defer { current.withLock { $0 = nil } }
        let began = ContinuousClock.now
        var text = ""
        var firstTokenAt: ContinuousClock.Instant?
        var model = request.reference.derivedID
        var printedLoading = false
        var calls: [ToolCall] = []
        do {
            for try await message in reader.events(of: TaskEvent.self) {
                guard case .event(let event) = message else { continue }
                switch event {
                case .queued(let position):
                    if position == 1 { status.show("waiting for a worker…", force: true) }
                    if position > 1 { status.show("waiting for a worker (\(position - 1) requests ahead)", force: true) }
                case .downloading(let hive, let name, let bytes, let total, let speed, let eta, let attempt):
                    model = name
                    let line = StatusLine.download(
                        "downloading", model: name, hive: hive, bytes: bytes, total: total, speedMBps: speed, etaS: eta, attempt: attempt)
                    status.show(line, force: total == bytes)
                case .loading(let hive, _, let loaded, let total):
                    printedLoading = true
                    status.show(
                        "loading \(model) on \(hive) " + StatusLine.bar(total > 0 ? Double(loaded) / Double(total) : 0) + " \(loaded)/\(total) layers",
                        force: loaded == total || loaded == 0)
                case .started(_, let name, let hive, _, _):
                    model = name
                    if printedLoading { status.done("loaded \(name) on \(hive)") } else { status.clear() }
                case .token(let piece, _):
                    if firstTokenAt == nil {
                        firstTokenAt = .now
                        status.clear()
                    }
                    text += piece
                    FileHandle.standardOutput.write(Data(piece.utf8))
                case .reasoning(let piece, _):
                    // The model's thinking goes beside the answer, not into it.
                    status.clear()
                    FileHandle.standardError.write(Data(piece.utf8))
                case .toolCall(let delta):
                    calls.apply(delta)
                case .end(let stats):
                    status.clear()
                    for call in calls {
                        let line = "tool call \(call.name)(\(call.arguments))"
                        text += text.isEmpty ? line : "\n" + line
                        FileHandle.standardOutput.write(Data(((text == line ? "" : "\n") + line).utf8))
                    }
                    Self.endLine(after: text)
                    if showStats {
                        let ttft = firstTokenAt.map { ($0 - began).milliseconds } ?? 0
                        let note = stats.stopReason == .cancelled ? " (cancelled)" : ""
                        status.write(
                            String(
                                format: "%d tokens, %.1f tokens/s, time to first token %.0f ms, prompt %d tokens%@\n", stats.tokensOut,
                                stats.tokensPerSec, ttft, stats.promptTokens, note))
                    }
                    return Outcome(text: text, stats: stats, cancelled: stats.stopReason == .cancelled)
                case .error(let error):
                    status.clear()
                    Self.endLine(after: text)
                    throw error
                }
            }
        } catch let error as RbeeError {
            status.clear()
            Self.endLine(after: text)
            throw error
        } catch {
            status.clear()
            Self.endLine(after: text)
            throw RbeeError(.unavailable, "the queen at \(connection.url) went away in the middle of the answer (\(error))")
        }
        status.clear()
        Self.endLine(after: text)
        throw RbeeError(.internalError, "the queen ended the stream without a result")
    }

    /// Ends the answer's line on stdout, so that what follows (statistics, an error, the next
    /// prompt) starts on a line of its own.
    private static func endLine(after text: String) {
        if !text.isEmpty, !text.hasSuffix("\n") { FileHandle.standardOutput.write(Data("\n".utf8)) }
    }

    /// Whether a task is under way.
    var isRunning: Bool { current.withLock { $0 != nil } }

    /// Asks the queen to cancel the task under way (Ctrl-C).
    func cancel() async {
        guard let id = current.withLock({ $0 }) else { return }
        _ = try? await connection.client.call(.DELETE, connection.url + "/v2/tasks/" + id, timeout: .seconds(5))
    }

    static func duration(_ seconds: Double) -> String {
        let total = Int(seconds.rounded())
        return total >= 60 ? "\(total / 60)m\(String(format: "%02d", total % 60))s" : "\(total)s"
    }
}
