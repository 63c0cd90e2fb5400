import Foundation
import RbeeAPI

// Chat templates as an independent renderer sees them: the pinned llama.cpp tree's real templates,
// and Python's jinja2 rendering them the way Hugging Face's transformers does.

/// This package's checkout (the tests read `scripts/` from it).
public let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

/// The pinned tree's `models/templates/`: under `RBEE_LLAMA_DIR`, else the cache's llama.cpp of the
/// version in `scripts/versions.env`.
public func llamaTemplateDirectory() throws -> String {
    let environment = ProcessInfo.processInfo.environment
    if let directory = environment["RBEE_LLAMA_DIR"], !directory.isEmpty { return directory + "/src/models/templates" }
    let versions = try String(contentsOfFile: repositoryRoot + "/scripts/versions.env", encoding: .utf8)
    guard let version = versions.split(separator: "\n").first(where: { $0.hasPrefix("LLAMA_CPP_PYTHON_VERSION=") })?.split(separator: "=").last
    else { throw Jinja2.Failure(description: "no LLAMA_CPP_PYTHON_VERSION in scripts/versions.env") }
    let cache = environment["RBEE_CACHE"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory() + "/.cache/rbee"
    return cache + "/llama.cpp-\(version)/src/models/templates"
}

/// The instruct model's special tokens, as its templates see them.
public let instructBOS = "<|im_start|>"
public let instructEOS = "<|im_end|>"

/// Python's jinja2 (in the virtualenv `scripts/test.sh` makes: `RBEE_JINJA_PYTHON`, else
/// `$RBEE_CACHE/venv-jinja2`) rendering a template as Hugging Face's transformers does, with the
/// variables llama.cpp hands every template.
public enum Jinja2 {
    public struct Failure: Error, CustomStringConvertible { public var description: String }

    public static func render(
        _ template: String, messages: [ChatMessage], bos: String = "", eos: String = "", extra: [String: JSONValue] = [:]
    ) throws -> String {
        let now = Date()
        var context: [String: JSONValue] = [
            "messages": .array(messages.map { .object(["role": .string($0.role), "content": .string($0.content)]) }),
            "bos_token": .string(bos), "eos_token": .string(eos), "add_generation_prompt": .bool(true),
            "enable_thinking": .bool(true),
            "date_string": .string(format(now, "dd MMM yyyy")), "datetime": .string(format(now, "MMM dd yyyy")),
        ]
        context.merge(extra) { $1 }
        let request = try JSONEncoder().encode(JSONValue.object(["template": .string(template), "context": .object(context)]))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [repositoryRoot + "/scripts/jinja_render.py"]
        let input = Pipe()
        let output = Pipe()
        let errors = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = errors
        guard FileManager.default.isExecutableFile(atPath: python) else {
            throw Failure(description: "no jinja2 virtualenv at \(python): run scripts/test.sh once, or set RBEE_JINJA_PYTHON")
        }
        try process.run()
        input.fileHandleForWriting.write(request)
        try input.fileHandleForWriting.close()
        let rendered = output.fileHandleForReading.readDataToEndOfFile()
        let message = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw Failure(description: "jinja2: " + String(decoding: message, as: UTF8.self)) }
        return String(decoding: rendered, as: UTF8.self)
    }

    public static let python: String = {
        let environment = ProcessInfo.processInfo.environment
        if let python = environment["RBEE_JINJA_PYTHON"], !python.isEmpty { return python }
        let cache = environment["RBEE_CACHE"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory() + "/.cache/rbee"
        return cache + "/venv-jinja2/bin/python3"
    }()

    static func format(_ date: Date, _ pattern: String) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.dateFormat = pattern
        return formatter.string(from: date)
    }
}
