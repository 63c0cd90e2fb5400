import Foundation
import RbeeAPI
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A command's use of the queen: the running one, or one it started (and stops at the end).
struct Session: Sendable {
    let connection: QueenConnection
    let started: StartedQueen?

    /// The default model: RBEE_MODEL, else the Gemma 3 270M file `scripts/fetch-model.sh` assembles
    /// from PyPI into the cache.
    static var defaultModel: String {
        let environment = ProcessInfo.processInfo.environment
        if let model = environment["RBEE_MODEL"], !model.isEmpty { return model }
        let cache = environment["RBEE_CACHE"] ?? NSHomeDirectory() + "/.cache/rbee"
        return "file:" + cache + "/models/gemma-3-270m-q4_k_m.gguf"
    }

    /// Uses the queen at `connection`, or starts a private one when none answers and it is local.
    static func open(_ connection: QueenConnection, autoStart: Bool, model: String?, status: StatusLine) async throws(RbeeError) -> Session {
        if await connection.health() != nil { return Session(connection: connection, started: nil) }
        guard autoStart, connection.isLocal else { throw connection.explained(RbeeError(.unavailable, "")) }
        var directories = [URL(fileURLWithPath: String(defaultModel.dropFirst(5))).deletingLastPathComponent().path]
        if let model, model.hasPrefix("file:") {
            directories.append(URL(fileURLWithPath: String(model.dropFirst(5))).deletingLastPathComponent().path)
        }
        let started = try await StartedQueen.start(connection, private: true, modelDirectories: directories, status: status)
        return Session(connection: connection, started: started)
    }

    /// Stops what this command started, and only that.
    func close() async {
        await started?.stop()
    }
}

/// Ctrl-C while a task runs: cancel it on the queen (the worker frees the slot), then exit 130.
/// A second Ctrl-C exits at once.
final class Interrupts {
    private final class Count: Sendable {
        let value = Mutex(0)
    }

    private let source: any DispatchSourceSignal
    private let count = Count()

    init(onInterrupt: @escaping @Sendable () -> Void) {
        signal(SIGINT, SIG_IGN)
        source = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
        source.setEventHandler { [count] in
            let seen = count.value.withLock { value in
                value += 1
                return value
            }
            if seen > 1 { _exit(130) }
            onInterrupt()
        }
        source.resume()
    }

    var interrupted: Bool { count.value.withLock { $0 > 0 } }

    /// Forgets earlier interrupts (chat: a Ctrl-C stopped one reply, the conversation goes on).
    func reset() { count.value.withLock { $0 = 0 } }
}

/// Lines of standard input, read on a thread of their own: a blocking read never holds a thread
/// of the cooperative pool.
enum StandardInput {
    static func lines() -> AsyncStream<String> {
        let (stream, continuation) = AsyncStream.makeStream(of: String.self)
        let thread = Thread {
            while let line = readLine() { continuation.yield(line) }
            continuation.finish()
        }
        thread.name = "rbee-stdin"
        thread.start()
        return stream
    }
}
