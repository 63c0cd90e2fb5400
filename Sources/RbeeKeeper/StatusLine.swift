import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// One line of status on stderr: redrawn in place on a terminal, plain lines otherwise (never
/// garbled in a log file or a pipe). Tokens go to stdout; `clear()` before the first of them.
public final class StatusLine: Sendable {
    public let isTerminal: Bool
    private struct State {
        var visible = false
        var lastPlain: String?
        var lastPlainAt: ContinuousClock.Instant?
    }
    private let state = Mutex(State())

    public init(isTerminal: Bool = isatty(STDERR_FILENO) == 1) {
        self.isTerminal = isTerminal
    }

    /// Shows `text` as the current status. Without a terminal, a line is written when the text
    /// changes, at most once a second unless `force`.
    public func show(_ text: String, force: Bool = false) {
        if isTerminal {
            state.withLock { $0.visible = true }
            write("\r\u{1B}[2K" + text)
            return
        }
        let now = ContinuousClock.now
        let print = state.withLock { state -> Bool in
            guard state.lastPlain != text else { return false }
            if !force, let last = state.lastPlainAt, now - last < .seconds(1) { return false }
            state.lastPlain = text
            state.lastPlainAt = now
            return true
        }
        if print { write(text + "\n") }
    }

    /// Ends the current status with `text` on its own line.
    public func done(_ text: String) {
        if isTerminal {
            state.withLock { $0.visible = false }
            write("\r\u{1B}[2K" + text + "\n")
        } else {
            state.withLock { $0.lastPlain = text }
            write(text + "\n")
        }
    }

    /// Removes the status line (on a terminal), so what follows starts on a clean line.
    public func clear() {
        guard isTerminal, state.withLock({ state in
            defer { state.visible = false }
            return state.visible
        }) else { return }
        write("\r\u{1B}[2K")
    }

    public func write(_ text: String) {
        FileHandle.standardError.write(Data(text.utf8))
    }

    /// `[#######-------]`
    public static func bar(_ fraction: Double, width: Int = 24) -> String {
        let filled = max(0, min(width, Int((fraction * Double(width)).rounded(.down))))
        return "[" + String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled) + "]"
    }

    public static func megabytes(_ bytes: Int) -> String { String(format: "%.1f MB", Double(bytes) / 1_000_000) }

    /// "downloading m on h [####----]  42% 10.0 MB / 24.0 MB  3.1 MB/s  ETA 5s": one download's
    /// state, for `rbee infer` and `rbee models pull` alike.
    static func download(
        _ verb: String, model: String, hive: String, bytes: Int, total: Int?, speedMBps: Double, etaS: Double?, attempt: Int = 1
    ) -> String {
        var line = "\(verb) \(model) on \(hive) "
        if let total, total > 0 {
            line += bar(Double(bytes) / Double(total)) + String(format: " %3d%% ", Int(Double(bytes) * 100 / Double(total)))
            line += megabytes(bytes) + " / " + megabytes(total)
        } else {
            line += megabytes(bytes)
        }
        line += String(format: "  %.1f MB/s", speedMBps)
        if let etaS { line += "  ETA \(TaskPrinter.duration(etaS))" }
        if attempt > 1 { line += "  (attempt \(attempt))" }
        return line
    }
}
