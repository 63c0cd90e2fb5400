import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat

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

public func decode<T: Decodable>(_ type: T.Type, _ data: Data) throws -> T { try JSONDecoder().decode(type, from: data) }
