import Foundation
import RbeeAPI
import Subprocess

#if canImport(System)
import System
#else
import SystemPackage
#endif

/// A child process (a worker of a hive, the queen's local hive, the CLI's private queen) whose
/// life is bounded by the task that runs it, through swift-subprocess: `run` returns once the
/// process has ended — by itself, after `stop` is requested, or because the calling task was
/// cancelled — and in both of the last cases it gets SIGTERM, then SIGKILL after `grace`.
///
/// Its standard error (where rbee's programs log) is appended to `logFile` when one is given —
/// past `logLimitBytes` the file is rotated to `<logFile>.1`, so a chatty child never fills the
/// disk — and its last few kilobytes are kept for error reports; standard output is discarded.
public struct ChildProcess: Sendable {
    public var executable: String
    public var arguments: [String]
    /// Changes to the inherited environment; a nil value removes the variable.
    public var environment: [String: String?]
    public var logFile: String?
    public var logLimitBytes: Int
    public var grace: Duration

    public init(
        executable: String, arguments: [String], environment: [String: String?] = [:], logFile: String? = nil, logLimitBytes: Int = 8 << 20,
        grace: Duration
    ) {
        self.executable = executable
        self.arguments = arguments
        self.environment = environment
        self.logFile = logFile
        self.logLimitBytes = logLimitBytes
        self.grace = grace
    }

    /// How the process ended.
    public struct Termination: Sendable, Equatable, CustomStringConvertible {
        /// "exit 0", "signal 9".
        public var status: String
        public var exitedCleanly: Bool
        /// The end of its standard error.
        public var stderrTail: String?
        /// Asked to stop, it ignored SIGTERM for the whole grace period and was killed with SIGKILL.
        public var forcedKill = false
        public var description: String { status }
    }

    public static let tailBytes = 4096

    /// Runs the process to its end. `onStart` gets its pid once it runs. Throws only when it
    /// cannot be started.
    public func run(stop: ShutdownSwitch, onStart: @Sendable (Int32) -> Void = { _ in }) async throws(RbeeError) -> Termination {
        var options = PlatformOptions()
        options.teardownSequence = [.gracefulShutDown(allowedDurationToNextStep: grace)]
        var changes: [Environment.Key: String?] = [:]
        for (name, value) in environment {
            if let key = Environment.Key(rawValue: name) { changes[key] = value }
        }
        var log = logFile.map { RotatingLog(path: $0, limit: logLimitBytes) }
        defer { log?.close() }
        let grace = self.grace
        // Set when this process asks the child to end; only then is a SIGKILL our own.
        let stopAsked = ShutdownSwitch()
        do {
            let result = try await Subprocess.run(
                .path(FilePath(executable)), arguments: Arguments(arguments), environment: .inherit.updating(changes),
                platformOptions: options, input: .none, output: .discarded, error: .sequence
            ) { execution in
                onStart(execution.processIdentifier.value)
                return await withTaskGroup(of: Void.self) { group in
                    group.addTask {
                        await stop.wait()
                        // A stop request, not the end of the process or of the calling task.
                        guard !Task.isCancelled else { return }
                        stopAsked.request()
                        await execution.teardown(using: [.gracefulShutDown(allowedDurationToNextStep: grace)])
                    }
                    var tail = Data()
                    do {
                        // Ends when the process exits.
                        for try await buffer in execution.standardError {
                            let bytes = buffer.withUnsafeBytes { Data($0) }
                            log?.write(bytes)
                            tail.append(bytes)
                            if tail.count > 2 * Self.tailBytes { tail = tail.suffix(Self.tailBytes) }
                        }
                    } catch {
                        // Cancelled: the teardown sequence ends the process.
                    }
                    group.cancelAll()
                    return tail.isEmpty ? nil : String(decoding: tail.suffix(Self.tailBytes), as: UTF8.self)
                }
            }
            let tail = result.closureResult
            switch result.terminationStatus {
            case .exited(let code): return Termination(status: "exit \(code)", exitedCleanly: code == 0, stderrTail: tail)
            case .signaled(let signal):
                // The teardown sequence ends with SIGKILL: a child asked to stop (or whose task was
                // cancelled) that died of it had ignored SIGTERM for the whole grace period.
                let forced = signal == SIGKILL && (stopAsked.isRequested || Task.isCancelled)
                return Termination(status: "signal \(signal)", exitedCleanly: false, stderrTail: tail, forcedKill: forced)
            }
        } catch {
            throw RbeeError(.internalError, "cannot start \(executable): \(error)", details: ["executable": .string(executable)])
        }
    }

    /// A log file appended to, rotated to `<path>.1` once it holds `limit` bytes.
    struct RotatingLog {
        let path: String
        let limit: Int
        private var handle: FileHandle?
        private var size: Int

        init(path: String, limit: Int) {
            self.path = path
            self.limit = limit
            size = ((try? FileManager.default.attributesOfItem(atPath: path)[.size]) as? Int) ?? 0
            handle = Self.open(path)
        }

        static func open(_ path: String) -> FileHandle? {
            if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
            guard let handle = FileHandle(forWritingAtPath: path) else { return nil }
            handle.seekToEndOfFile()
            return handle
        }

        mutating func write(_ bytes: Data) {
            if size + bytes.count > limit, size > 0 {
                try? handle?.close()
                try? FileManager.default.removeItem(atPath: path + ".1")
                try? FileManager.default.moveItem(atPath: path, toPath: path + ".1")
                handle = Self.open(path)
                size = 0
            }
            handle?.write(bytes)
            size += bytes.count
        }

        func close() { try? handle?.close() }
    }
}
