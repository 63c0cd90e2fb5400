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

    /// The text and index of a `token` frame's payload as `tokenFrame` writes it
    /// (`{"i":N,"t":"…","type":"token"}`), without JSONDecoder: a relay reads one per token.
    /// Nil for anything else, which is then decoded the ordinary way.
    public static func tokenPayload(_ payload: String) -> (text: String, index: Int)? {
        var utf8 = payload.utf8[...]
        guard utf8.count > 21, utf8.starts(with: #"{"i":"#.utf8), utf8.suffix(16).elementsEqual(#","type":"token"}"#.utf8) else { return nil }
        utf8 = utf8.dropFirst(5).dropLast(16)
        var index = 0
        var digits = 0
        while let byte = utf8.first, byte >= 0x30, byte <= 0x39 {
            index = index &* 10 &+ Int(byte - 0x30)
            digits += 1
            utf8 = utf8.dropFirst()
        }
        guard digits > 0, digits < 18, utf8.starts(with: #","t":""#.utf8), utf8.last == UInt8(ascii: "\"") else { return nil }
        let body = utf8.dropFirst(6).dropLast()
        // Most pieces have no escape at all.
        guard body.contains(UInt8(ascii: "\\")) else {
            return body.contains(UInt8(ascii: "\"")) ? nil : (String(decoding: body, as: UTF8.self), index)
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(body.count)
        var iterator = body.makeIterator()
        var pendingHigh: UInt32?
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "\\") else {
                guard byte != UInt8(ascii: "\""), pendingHigh == nil else { return nil }
                bytes.append(byte)
                continue
            }
            guard let escaped = iterator.next() else { return nil }
            let scalarValue: UInt32
            switch escaped {
            case UInt8(ascii: "\""): scalarValue = 0x22
            case UInt8(ascii: "\\"): scalarValue = 0x5C
            case UInt8(ascii: "/"): scalarValue = 0x2F
            case UInt8(ascii: "n"): scalarValue = 0x0A
            case UInt8(ascii: "r"): scalarValue = 0x0D
            case UInt8(ascii: "t"): scalarValue = 0x09
            case UInt8(ascii: "b"): scalarValue = 0x08
            case UInt8(ascii: "f"): scalarValue = 0x0C
            case UInt8(ascii: "u"):
                var value: UInt32 = 0
                for _ in 0..<4 {
                    guard let hex = iterator.next(), let digit = Self.hexValue(hex) else { return nil }
                    value = value << 4 | digit
                }
                scalarValue = value
            default: return nil
            }
            if let high = pendingHigh {
                guard (0xDC00...0xDFFF).contains(scalarValue) else { return nil }
                pendingHigh = nil
                let combined = 0x10000 + ((high - 0xD800) << 10) + (scalarValue - 0xDC00)
                guard let scalar = Unicode.Scalar(combined) else { return nil }
                bytes.append(contentsOf: String(scalar).utf8)
            } else if (0xD800...0xDBFF).contains(scalarValue) {
                pendingHigh = scalarValue
            } else {
                guard let scalar = Unicode.Scalar(scalarValue) else { return nil }
                bytes.append(contentsOf: String(scalar).utf8)
            }
        }
        guard pendingHigh == nil else { return nil }
        return (String(decoding: bytes, as: UTF8.self), index)
    }

    private static func hexValue(_ byte: UInt8) -> UInt32? {
        switch byte {
        case 0x30...0x39: UInt32(byte - 0x30)
        case 0x41...0x46: UInt32(byte - 0x41 + 10)
        case 0x61...0x66: UInt32(byte - 0x61 + 10)
        default: nil
        }
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
/// place of an event that cannot be encoded, and it may decode its most frequent frame faster
/// than JSONDecoder does.
public protocol StreamEvent: Codable, Sendable {
    static func encodingFailure(_ error: RbeeError) -> Self
    /// The event a frame's payload holds, decoded without JSONDecoder; nil to decode it the
    /// ordinary way.
    static func decodeFast(_ payload: String) -> Self?
}

extension StreamEvent {
    public static func decodeFast(_ payload: String) -> Self? { nil }
}

extension InferenceEvent: StreamEvent {
    public static func encodingFailure(_ error: RbeeError) -> InferenceEvent { .error(error) }
    /// Token frames: the per-token path of every relay.
    public static func decodeFast(_ payload: String) -> InferenceEvent? {
        SSE.tokenPayload(payload).map { .token(text: $0.text, index: $0.index) }
    }
}

extension TaskEvent: StreamEvent {
    public static func encodingFailure(_ error: RbeeError) -> TaskEvent { .error(error) }
    public static func decodeFast(_ payload: String) -> TaskEvent? {
        SSE.tokenPayload(payload).map { .token(text: $0.text, index: $0.index) }
    }
}

extension LoadingProgress: StreamEvent {
    public static func encodingFailure(_ error: RbeeError) -> LoadingProgress { .failed(error) }
}

extension DownloadProgress: StreamEvent {
    public static func encodingFailure(_ error: RbeeError) -> DownloadProgress { .failed(error) }
}
