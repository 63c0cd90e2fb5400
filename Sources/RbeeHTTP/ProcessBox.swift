import Foundation
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// One child process: started with Foundation's `Process`, its end reported at once through
/// the termination handler, the last 4 KiB of its stderr kept for error reports (or its output
/// appended to a log file, for long-lived daemons).
public final class ProcessBox: Sendable {
    private struct State {
        var process: Process?
        var tail = Data()
        var ended: String?
    }

    private let state = Mutex(State())

    public var pid: Int32 { state.withLock { $0.process?.processIdentifier ?? 0 } }
    public var stderrTail: String? { state.withLock { $0.tail.isEmpty ? nil : String(decoding: $0.tail, as: UTF8.self) } }
    public var hasEnded: Bool { state.withLock { $0.ended != nil } }

    public init() {}

    public func start(
        executable: String, arguments: [String], environment: [String: String], logFile: String? = nil,
        onExit: @escaping @Sendable (String) -> Void
    ) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = environment
        process.standardOutput = FileHandle.nullDevice
        if let logFile {
            if !FileManager.default.fileExists(atPath: logFile) { FileManager.default.createFile(atPath: logFile, contents: nil) }
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: logFile))
            handle.seekToEndOfFile()
            process.standardOutput = handle
            process.standardError = handle
        }
        let pipe = Pipe()
        if logFile == nil { process.standardError = pipe }
        pipe.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let data = handle.availableData
            guard !data.isEmpty else {
                handle.readabilityHandler = nil
                return
            }
            self?.state.withLock { state in
                state.tail.append(data)
                if state.tail.count > 4096 { state.tail.removeFirst(state.tail.count - 4096) }
            }
        }
        process.terminationHandler = { [weak self] process in
            let status =
                process.terminationReason == .uncaughtSignal ? "signal \(process.terminationStatus)" : "exit \(process.terminationStatus)"
            self?.state.withLock { $0.ended = status }
            onExit(status)
        }
        try process.run()
        state.withLock { $0.process = process }
    }

    /// SIGTERM, then SIGKILL after `grace`; returns once the process has ended.
    public func stop(grace: Duration, logger: Logger) async {
        let pid = self.pid
        guard pid > 0, !hasEnded else { return }
        kill(pid, SIGTERM)
        let ended = await waitForEnd(timeout: grace)
        if !ended {
            logger.warning("process ignored SIGTERM: sending SIGKILL", metadata: ["pid": "\(pid)"])
            kill(pid, SIGKILL)
            _ = await waitForEnd(timeout: .seconds(5))
        }
    }

    /// Polls every 20 ms: a wait on the termination handler could not be abandoned at the
    /// deadline (a task group waits for all its children), and a stop happens rarely.
    private func waitForEnd(timeout: Duration) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if hasEnded { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return hasEnded
    }
}
