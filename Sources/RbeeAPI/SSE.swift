import Foundation

/// Server-sent events as rbee writes them: `data: <json>\n\n` frames, `: comment` lines for
/// keep-alive and progress, and a final `data: [DONE]\n\n`.
public enum SSE {
    public static let done = "data: [DONE]\n\n"
    /// The payload of the last frame.
    public static let doneData = "[DONE]"
    public static let keepAlive = ": keep-alive\n\n"

    /// Encodes an event as one `data:` frame. An event that cannot be encoded (a non-finite
    /// number, say) becomes the stream's own error event: never `{}` and never a silent gap.
    public static func frame<Event: StreamEvent>(_ event: Event) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes, .sortedKeys]
        let data: Data
        do {
            data = try encoder.encode(event)
        } catch {
            let failure = RbeeError(.internalError, "cannot encode an event: \(error)")
            guard let fallback = try? encoder.encode(Event.encodingFailure(failure)) else {
                return "data: {\"code\":\"INTERNAL\",\"message\":\"cannot encode an event\",\"type\":\"error\"}\n\n"
            }
            data = fallback
        }
        return "data: " + String(decoding: data, as: UTF8.self) + "\n\n"
    }

    /// A `token` event frame, byte-identical to `frame(InferenceEvent.token(...))` but without
    /// JSONEncoder: this runs once per generated token.
    public static func tokenFrame(text: String, index: Int) -> String {
        var out = "data: {\"i\":"
        out.reserveCapacity(text.utf8.count + 48)
        out += String(index)
        out += ",\"t\":"
        appendJSONString(text, to: &out)
        out += ",\"type\":\"token\"}\n\n"
        return out
    }

    /// Appends `text` as a JSON string literal (quotes included), escaped as JSONEncoder does
    /// with `.withoutEscapingSlashes`: for frames built by hand on the per-token path.
    public static func appendJSONString(_ text: String, to out: inout String) {
        out += "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            case let control where control.value < 0x20:
                out += "\\u00" + (control.value < 0x10 ? "0" : "") + String(control.value, radix: 16)
            default: out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
    }

    /// A comment line; newlines in `text` are folded so it stays one comment.
    public static func comment(_ text: String) -> String {
        ": " + text.replacingOccurrences(of: "\n", with: " ") + "\n\n"
    }

    /// One parsed unit of an SSE stream.
    public enum Message: Sendable, Equatable {
        case data(String)
        case comment(String)
    }
}

/// Incremental SSE parser for clients: feed it bytes as they arrive, take whole messages out.
public struct SSEParser: Sendable {
    private var pending: [UInt8] = []
    private var dataLines: [String] = []

    public init() {}

    /// Parses what `bytes` completes; a partial line waits for the next call.
    public mutating func feed(_ bytes: some Sequence<UInt8>) -> [SSE.Message] {
        pending.append(contentsOf: bytes)
        var messages: [SSE.Message] = []
        var start = 0
        while let newline = pending[start...].firstIndex(of: UInt8(ascii: "\n")) {
            var end = newline
            if end > start, pending[end - 1] == UInt8(ascii: "\r") { end -= 1 }
            let line = String(decoding: pending[start..<end], as: UTF8.self)
            start = newline + 1
            if line.isEmpty {
                if !dataLines.isEmpty {
                    messages.append(.data(dataLines.joined(separator: "\n")))
                    dataLines.removeAll()
                }
            } else if line.hasPrefix(":") {
                messages.append(.comment(String(line.dropFirst()).trimmingCharacters(in: .whitespaces)))
            } else if line.hasPrefix("data:") {
                var value = line.dropFirst(5)
                if value.first == " " { value = value.dropFirst() }
                dataLines.append(String(value))
            }
        }
        pending.removeFirst(start)
        return messages
    }
}

/// An event of one of rbee's SSE streams: it knows its stream's error event, which takes the
/// place of an event that cannot be encoded.
public protocol StreamEvent: Encodable, Sendable {
    static func encodingFailure(_ error: RbeeError) -> Self
}

extension InferenceEvent: StreamEvent {
    public static func encodingFailure(_ error: RbeeError) -> InferenceEvent { .error(error) }
}

extension TaskEvent: StreamEvent {
    public static func encodingFailure(_ error: RbeeError) -> TaskEvent { .error(error) }
}

extension LoadingProgress: StreamEvent {
    public static func encodingFailure(_ error: RbeeError) -> LoadingProgress { .failed(error) }
}

extension DownloadProgress: StreamEvent {
    public static func encodingFailure(_ error: RbeeError) -> DownloadProgress { .failed(error) }
}
