import Foundation
import RbeeAPI

/// Turns task outputs into OpenAI's stream (`chat.completion.chunk` or `text_completion`
/// chunks, `finish_reason` and `usage` in the final chunk, `[DONE]`). Queue, download and load
/// progress become SSE comments, which OpenAI clients skip but proxies see as traffic.
struct OpenAIFrames: AsyncSequence, Sendable {
    typealias Element = String
    typealias Failure = Never

    let outputs: AsyncStream<TaskOutput>
    let chat: Bool
    let id: String
    let model: String
    let includeUsage: Bool
    let created = Int(Date().timeIntervalSince1970)

    struct AsyncIterator: AsyncIteratorProtocol {
        var source: AsyncStream<TaskOutput>.AsyncIterator
        let frames: OpenAIFrames
        var done = false
        var sentRole = false

        mutating func next() async -> String? {
            if done { return nil }
            while true {
                guard let output = await source.next() else {
                    done = true
                    return SSE.done
                }
                switch output {
                case .keepAlive: return SSE.keepAlive
                case .event(let event):
                    if let frame = frame(for: event) { return frame }
                }
            }
        }

        private mutating func frame(for event: TaskEvent) -> String? {
            switch event {
            case .queued(let position):
                return position > 0 ? SSE.comment("queued at position \(position)") : nil
            case .downloading(let hive, let model, let bytes, let total, let speed, let eta):
                return SSE.comment(ProgressText.download(hive: hive, model: model, bytes: bytes, total: total, speedMBps: speed, etaS: eta))
            case .loading(let hive, _, let loaded, let total):
                return SSE.comment("loading \(frames.model) on \(hive): \(loaded)/\(total) layers")
            case .started:
                guard frames.chat, !sentRole else { return nil }
                sentRole = true
                return frames.chunk(content: "", role: true, finishReason: nil, usage: nil)
            case .token(let text, _):
                return frames.chunk(content: text, role: false, finishReason: nil, usage: nil)
            case .end(let stats):
                return frames.chunk(
                    content: nil, role: false, finishReason: OpenAIFrames.finishReason(stats.stopReason),
                    usage: frames.includeUsage ? stats : nil)
            case .error(let code, let message):
                return SSE.frame(OpenAIError(code: code, message: message))
            }
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(source: outputs.makeAsyncIterator(), frames: self) }

    static func finishReason(_ reason: StopReason) -> String {
        switch reason {
        case .maxTokens: "length"
        case .eos, .stopSequence, .cancelled: "stop"
        }
    }

    /// One chunk, built by hand: it runs once per token.
    func chunk(content: String?, role: Bool, finishReason: String?, usage: GenerationStats?) -> String {
        var out = "data: {\"id\":"
        SSE.appendJSONString(id, to: &out)
        out += chat ? ",\"object\":\"chat.completion.chunk\"" : ",\"object\":\"text_completion\""
        out += ",\"created\":\(created),\"model\":"
        SSE.appendJSONString(model, to: &out)
        out += ",\"choices\":[{\"index\":0,"
        if chat {
            out += "\"delta\":{"
            if role { out += "\"role\":\"assistant\"," }
            if let content {
                out += "\"content\":"
                SSE.appendJSONString(content, to: &out)
            } else if out.hasSuffix(",") {
                out.removeLast()
            }
            out += "},"
        } else {
            out += "\"text\":"
            SSE.appendJSONString(content ?? "", to: &out)
            out += ",\"logprobs\":null,"
        }
        out += "\"finish_reason\":"
        if let finishReason { SSE.appendJSONString(finishReason, to: &out) } else { out += "null" }
        out += "}]"
        if let usage {
            out += ",\"usage\":{\"prompt_tokens\":\(usage.promptTokens),\"completion_tokens\":\(usage.tokensOut),"
            out += "\"total_tokens\":\(usage.promptTokens + usage.tokensOut)}"
        }
        out += "}\n\n"
        return out
    }
}

/// OpenAI's error body: `{"error":{"message","type","param","code"}}`.
struct OpenAIError: Encodable, Sendable {
    struct Body: Encodable, Sendable {
        var message: String
        var type: String
        var param: String?
        var code: String
    }

    var error: Body

    init(code: String, message: String, param: String? = nil) {
        let type: String =
            switch ErrorCode(rawValue: code)?.httpStatus ?? 500 {
            case 400, 413: "invalid_request_error"
            case 401: "authentication_error"
            case 404: "not_found_error"
            case 429: "rate_limit_error"
            default: "server_error"
            }
        error = Body(message: message, type: type, param: param, code: code == ErrorCode.modelNotFound.rawValue ? "model_not_found" : code.lowercased())
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(error, forKey: .error)
    }

    enum CodingKeys: String, CodingKey { case error }
}

/// Progress lines shared by the OpenAI comments and logs.
enum ProgressText {
    static func download(hive: String, model: String, bytes: Int, total: Int?, speedMBps: Double, etaS: Double?) -> String {
        let mb = Double(bytes) / 1_000_000
        var text = "downloading \(model) on \(hive): "
        if let total, total > 0 {
            text += "\(Int(Double(bytes) * 100 / Double(total)))% \(String(format: "%.1f", mb))/\(String(format: "%.1f", Double(total) / 1_000_000)) MB"
        } else {
            text += String(format: "%.1f MB", mb)
        }
        text += String(format: ", %.1f MB/s", speedMBps)
        if let etaS { text += ", eta \(Int(etaS.rounded())) s" }
        return text
    }
}
