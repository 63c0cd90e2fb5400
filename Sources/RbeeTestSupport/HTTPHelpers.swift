import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1

/// `POST` a JSON body; the answer and its whole body.
public func post(_ url: String, json: String, headers: [(String, String)] = []) async throws -> (HTTPClientResponse, Data) {
    var request = HTTPClientRequest(url: url)
    request.method = .POST
    request.headers.add(name: "Content-Type", value: "application/json")
    for (name, value) in headers { request.headers.add(name: name, value: value) }
    request.body = .bytes(ByteBuffer(string: json))
    let response = try await http.execute(request, timeout: .seconds(120))
    return (response, Data(buffer: try await response.body.collect(upTo: 16 << 20)))
}

/// `GET`; the answer and its whole body.
public func get(_ url: String, headers: [(String, String)] = []) async throws -> (HTTPClientResponse, Data) {
    var request = HTTPClientRequest(url: url)
    for (name, value) in headers { request.headers.add(name: name, value: value) }
    let response = try await http.execute(request, timeout: .seconds(30))
    return (response, Data(buffer: try await response.body.collect(upTo: 16 << 20)))
}

/// `GET`, decoded.
public func get<T: Decodable>(_ url: String, as type: T.Type) async throws -> T {
    try JSONDecoder().decode(T.self, from: try await get(url).1)
}

public func delete(_ url: String) async throws -> HTTPClientResponse {
    var request = HTTPClientRequest(url: url)
    request.method = .DELETE
    let response = try await http.execute(request, timeout: .seconds(30))
    _ = try await response.body.collect(upTo: 1 << 20)
    return response
}

/// Any method, with an optional JSON body; the answer and its whole body.
public func send(_ method: HTTPMethod, _ url: String, json: String? = nil) async throws -> (HTTPClientResponse, Data) {
    var request = HTTPClientRequest(url: url)
    request.method = method
    if let json {
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(string: json))
    }
    let response = try await http.execute(request, timeout: .seconds(60))
    return (response, Data(buffer: try await response.body.collect(upTo: 16 << 20)))
}

public func decode<T: Decodable>(_ type: T.Type, _ data: Data) throws -> T { try JSONDecoder().decode(type, from: data) }

/// What is wrong with a Prometheus text answer: samples whose family lacks `# HELP` or `# TYPE`,
/// and lines that are neither samples nor comments. Empty when it is valid.
public func prometheusProblems(_ text: String) -> [String] {
    var helped = Set<String>()
    var typed: [String: String] = [:]
    var problems: [String] = []
    for line in text.split(separator: "\n") {
        let words = line.split(separator: " ", maxSplits: 3)
        if line.hasPrefix("# HELP "), words.count >= 3 {
            helped.insert(String(words[2]))
        } else if line.hasPrefix("# TYPE "), words.count == 4 {
            typed[String(words[2])] = String(words[3])
        } else if line.hasPrefix("#") {
            problems.append("unknown comment: \(line)")
        } else {
            let name = String(line.prefix { $0 != "{" && $0 != " " })
            guard line.split(separator: " ").count >= 2, Double(line.split(separator: " ").last ?? "") != nil || line.hasSuffix("Inf") else {
                problems.append("not a sample: \(line)")
                continue
            }
            var family = name
            for suffix in ["_bucket", "_sum", "_count"] where name.hasSuffix(suffix) && typed[name] == nil {
                let base = String(name.dropLast(suffix.count))
                if typed[base] == "histogram" { family = base }
            }
            if typed[family] == nil { problems.append("\(family) has no # TYPE") }
            if !helped.contains(family) { problems.append("\(family) has no # HELP") }
        }
    }
    return problems
}
