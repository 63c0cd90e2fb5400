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
        let encoder = OpenAIWire.encoder()
        /// A token chunk without its text: every token's frame is `prefix + text + suffix`.
        let tokenChunk: (prefix: String, suffix: String)
        var done = false
        var sentRole = false

        init(source: AsyncStream<TaskOutput>.AsyncIterator, frames: OpenAIFrames) {
            self.source = source
            self.frames = frames
            tokenChunk = frames.tokenChunkParts()
        }

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
            case .downloading(let hive, let model, let bytes, let total, let speed, let eta, let attempt):
                return SSE.comment(
                    ProgressText.download(hive: hive, model: model, bytes: bytes, total: total, speedMBps: speed, etaS: eta, attempt: attempt))
            case .loading(let hive, _, let loaded, let total):
                return SSE.comment("loading \(frames.model) on \(hive): \(loaded)/\(total) layers")
            case .started:
                guard frames.chat, !sentRole else { return nil }
                sentRole = true
                return chunk(content: "", role: "assistant")
            case .token(let text, _):
                var frame = tokenChunk.prefix
                frame.reserveCapacity(frame.utf8.count + text.utf8.count + tokenChunk.suffix.utf8.count + 8)
                SSE.appendJSONString(text, to: &frame)
                return frame + tokenChunk.suffix
            case .reasoning(let text, _):
                guard frames.chat else { return nil }
                return OpenAIWire.frame(chatChunk(OpenAIWire.ChatDelta(reasoningContent: text)), encoder: encoder)
            case .toolCall(let delta):
                guard frames.chat else { return nil }
                return OpenAIWire.frame(chatChunk(OpenAIWire.ChatDelta(toolCall: delta)), encoder: encoder)
            case .end(let stats):
                return chunk(content: nil, finishReason: OpenAIWire.finishReason(stats), usage: frames.includeUsage ? OpenAIWire.Usage(stats) : nil)
            case .error(let error):
                return OpenAIWire.frame(OpenAIWire.ErrorBody(error), encoder: encoder)
            }
        }

        private func chatChunk(_ choice: OpenAIWire.ChatDelta, usage: OpenAIWire.Usage? = nil) -> OpenAIWire.Completion<OpenAIWire.ChatDelta> {
            OpenAIWire.Completion(id: frames.id, object: "chat.completion.chunk", created: frames.created, model: frames.model, choices: [choice], usage: usage)
        }

        private func chunk(content: String?, role: String? = nil, finishReason: String? = nil, usage: OpenAIWire.Usage? = nil) -> String {
            if frames.chat {
                return OpenAIWire.frame(chatChunk(OpenAIWire.ChatDelta(role: role, content: content, finishReason: finishReason), usage: usage), encoder: encoder)
            }
            let choice = OpenAIWire.TextChoice(text: content ?? "", finishReason: finishReason)
            return OpenAIWire.frame(
                OpenAIWire.Completion(id: frames.id, object: "text_completion", created: frames.created, model: frames.model, choices: [choice], usage: usage),
                encoder: encoder)
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(source: outputs.makeAsyncIterator(), frames: self) }

    /// A token's chunk is written by hand, byte for byte what `OpenAIWire`'s encoding gives (a test
    /// pins it): it is the one frame of every token.
    func tokenChunkParts() -> (prefix: String, suffix: String) {
        var tail = ""
        tail += ",\"created\":\(created),\"id\":"
        SSE.appendJSONString(id, to: &tail)
        tail += ",\"model\":"
        SSE.appendJSONString(model, to: &tail)
        if chat {
            return (#"data: {"choices":[{"delta":{"content":"#, #"},"finish_reason":null,"index":0}]"# + tail + #","object":"chat.completion.chunk"}"# + "\n\n")
        }
        return (#"data: {"choices":[{"finish_reason":null,"index":0,"logprobs":null,"text":"#, "}]" + tail + #","object":"text_completion"}"# + "\n\n")
    }
}

/// Progress lines shared by the OpenAI comments and logs.
enum ProgressText {
    static func download(hive: String, model: String, bytes: Int, total: Int?, speedMBps: Double, etaS: Double?, attempt: Int = 1) -> String {
        let mb = Double(bytes) / 1_000_000
        var text = "downloading \(model) on \(hive): "
        if let total, total > 0 {
            text += "\(Int(Double(bytes) * 100 / Double(total)))% \(String(format: "%.1f", mb))/\(String(format: "%.1f", Double(total) / 1_000_000)) MB"
        } else {
            text += String(format: "%.1f MB", mb)
        }
        text += String(format: ", %.1f MB/s", speedMBps)
        if let etaS { text += ", eta \(Int(etaS.rounded())) s" }
        if attempt > 1 { text += ", attempt \(attempt)" }
        return text
    }
}
