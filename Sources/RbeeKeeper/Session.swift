import Foundation
import RbeeAPI
import RbeeHTTP
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A command's use of the queen: the running one, or a private one it starts for the command's
/// duration. A private queen runs as a child task of the command (`ChildProcess`), so it ends with
/// it — it stops the hive it started, which stops its workers — whatever way the command ends.
struct Session: Sendable {
    let connection: QueenConnection

    /// The default model: RBEE_MODEL, else the instruction-tuned SmolLM2-135M-Instruct that
    /// `scripts/fetch-model.sh` puts into the cache (RBEE_MODEL_DIR, else RBEE_CACHE/models).
    static var defaultModel: String {
        let environment = ProcessInfo.processInfo.environment
        if let model = environment["RBEE_MODEL"], !model.isEmpty { return model }
        let cache = environment["RBEE_CACHE"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory() + "/.cache/rbee"
        let models = environment["RBEE_MODEL_DIR"].flatMap { $0.isEmpty ? nil : $0 } ?? cache + "/models"
        return "file:" + models + "/SmolLM2-135M-Instruct.Q4_1.gguf"
    }

    /// Runs `body` with the queen at `connection`, or — when none answers, it is local and
    /// `autoStart` — with a private one started for it and stopped afterwards.
    static func run<T: Sendable>(
        _ connection: QueenConnection, autoStart: Bool, model: String?, status: StatusLine, _ body: @Sendable (Session) async throws -> T
    ) async throws -> T {
        let session = Session(connection: connection)
        switch await connection.peer() {
        case .queen: return try await body(session)
        case .other(let error): throw error
        case .nothing: break
        }
        guard autoStart, connection.isLocal else { throw await connection.explained(RbeeError(.unavailable, "")) }
        var directories = [URL(fileURLWithPath: String(defaultModel.dropFirst(5))).deletingLastPathComponent().path]
        if let model, model.hasPrefix("file:") {
            directories.append(URL(fileURLWithPath: String(model.dropFirst(5))).deletingLastPathComponent().path)
        }
        let queen = try PrivateQueen(connection, modelDirectories: directories)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await queen.run() }
            try await queen.waitReady(status: status)
            let result = try await body(session)
            queen.stop.request()
            try await group.waitForAll()
            return result
        }
    }
}

/// A `queen-rbee` started for one command: a fresh local hive on a free port, ending with it.
final class PrivateQueen: Sendable {
    let connection: QueenConnection
    let process: ChildProcess
    let log: String
    let stop = ShutdownSwitch()
    private let ended = Mutex<String?>(nil)

    init(_ connection: QueenConnection, modelDirectories: [String]) throws(RbeeError) {
        self.connection = connection
        let binary: String
        do {
            binary = try ProgramDirectory.program("queen-rbee")
        } catch {
            throw RbeeError(.unavailable, "no queen answers at \(connection.url), and none can be started: \(error.message)")
        }
        let logDirectory = connection.home + "/logs"
        try? FileManager.default.createDirectory(atPath: logDirectory, withIntermediateDirectories: true)
        log = logDirectory + "/queen.log"
        var arguments = ["--port", "\(connection.port)", "--home", connection.home, "--exit-with-parent", "--local-hive-port", "0"]
        if let file = connection.tokenFile { arguments += ["--token-file", file] }
        for directory in Set(modelDirectories).sorted() { arguments += ["--model-dir", directory] }
        process = ChildProcess(executable: binary, arguments: arguments, logFile: log, grace: .seconds(30))
    }

    func run() async throws {
        let termination = try await process.run(stop: stop)
        ended.withLock { $0 = termination.status }
    }

    /// Waits for the queen's health, with a status line on stderr.
    func waitReady(status: StatusLine) async throws(RbeeError) {
        status.show("starting queen-rbee on \(connection.url)…")
        let began = ContinuousClock.now
        let deadline = began + .seconds(30)
        while ContinuousClock.now < deadline {
            if let exit = ended.withLock({ $0 }) {
                status.clear()
                throw RbeeError(.unavailable, "queen-rbee exited while starting (\(exit)); see \(log)")
            }
            if await connection.health(timeout: .milliseconds(500)) != nil {
                status.done(String(format: "queen-rbee ready on %@ (%.1f s)", connection.url, (ContinuousClock.now - began).milliseconds / 1000))
                return
            }
            try? await Task.sleep(for: .milliseconds(100))
        }
        status.clear()
        stop.request()
        throw RbeeError(.unavailable, "queen-rbee did not answer within 30 s; see \(log)")
    }
}

/// Ctrl-C while a task runs: the command cancels it on the queen (the worker frees the slot),
/// then exits 130. A second Ctrl-C exits at once.
final class Interrupts: Sendable {
    /// One element per Ctrl-C; the command that runs the task reads them.
    let events: AsyncStream<Void>
    /// Configured and resumed in `init` and never touched again: it is only kept alive here, so
    /// no two threads ever use it.
    nonisolated(unsafe) private let source: any DispatchSourceSignal
    private let count = Mutex(0)

    /// `whenIdle`: what a Ctrl-C does when no task is running (nil: it is only counted).
    init(whenIdle: (@Sendable () -> Void)? = nil, isRunning: @escaping @Sendable () -> Bool = { true }) {
        signal(SIGINT, SIG_IGN)
        let (events, continuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        self.events = events
        source = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
        source.setEventHandler { [weak self] in
            guard let self else { return }
            if !isRunning(), let whenIdle { return whenIdle() }
            let seen = count.withLock { value in
                value += 1
                return value
            }
            if seen > 1 { _exit(130) }
            continuation.yield()
        }
        source.resume()
    }

    var interrupted: Bool { count.withLock { $0 > 0 } }

    /// Forgets earlier interrupts (chat: a Ctrl-C stopped one reply, the conversation goes on).
    func reset() { count.withLock { $0 = 0 } }
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
