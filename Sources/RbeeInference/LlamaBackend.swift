internal import CLlama
import Logging

/// Process-wide llama.cpp setup: `llama_backend_init` once, and llama.cpp's own log lines routed
/// through swift-log (errors and warnings kept, chatter at trace level).
enum LlamaBackend {
    private static let initialized: Void = {
        llama_log_set({ level, text, _ in
            guard let text else { return }
            let line = String(cString: text).trimmingCharacters(in: .newlines)
            guard !line.isEmpty else { return }
            switch level {
            case GGML_LOG_LEVEL_ERROR: llamaLogger.error("\(line)")
            case GGML_LOG_LEVEL_WARN: llamaLogger.notice("\(line)")
            default: llamaLogger.trace("\(line)")
            }
        }, nil)
        llama_backend_init()
    }()

    static func ensureInitialized() { _ = initialized }
}

private let llamaLogger = Logger(label: "llama.cpp")
