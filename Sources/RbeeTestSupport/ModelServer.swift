import Foundation
import Logging
import HTTPTypes
import Hummingbird
import NIOCore
import Synchronization

/// A local file server for download tests, on loopback, laid out as a Hugging Face endpoint
/// serves files: serves real files with `Range` support and `HEAD`, and can misbehave on cue
/// (drop the connection part-way, stall, refuse, corrupt a transfer, announce a sha256 or a size).
public final class ModelServer: Sendable {
    public struct Behaviour: Sendable {
        /// Close the connection after this fraction of the file, on the first request only.
        public var dropAtFraction: Double?
        /// Send this many bytes, then nothing more (a stall).
        public var stallAfterBytes: Int?
        /// Pause between 1 MiB chunks, to make progress observable.
        public var chunkDelay: Duration?
        /// Answer every request with this status.
        public var status: Int?
        /// Sent as `X-Linked-Etag`, as Hugging Face does for LFS files.
        public var linkedETag: String?
        /// Flip one byte in this many transfers (`GET`s), the first ones.
        public var corruptTransfers = 0
        /// The size `HEAD` announces instead of the file's.
        public var announcedSize: Int?

        public init(
            dropAtFraction: Double? = nil, stallAfterBytes: Int? = nil, chunkDelay: Duration? = nil, status: Int? = nil, linkedETag: String? = nil,
            corruptTransfers: Int = 0, announcedSize: Int? = nil
        ) {
            self.dropAtFraction = dropAtFraction
            self.stallAfterBytes = stallAfterBytes
            self.chunkDelay = chunkDelay
            self.status = status
            self.linkedETag = linkedETag
            self.corruptTransfers = corruptTransfers
            self.announcedSize = announcedSize
        }
    }

    private struct State {
        var behaviour = Behaviour()
        var requests = 0
        var heads = 0
        var bytesSent = 0
        var ranges: [String] = []
    }

    private let state = Mutex(State())
    public let files: [String: String]
    private let server: StandInServer

    public var url: String { server.url }
    /// `GET`s (transfers) so far.
    public var requests: Int { state.withLock { $0.requests } }
    public var heads: Int { state.withLock { $0.heads } }
    public var bytesSent: Int { state.withLock { $0.bytesSent } }
    public var ranges: [String] { state.withLock { $0.ranges } }
    public func set(_ behaviour: Behaviour) { state.withLock { $0.behaviour = behaviour } }

    private init(files: [String: String], server: StandInServer) {
        self.files = files
        self.server = server
    }

    /// Serves `files` (URL path → file path); by default the real model as `modelRef` names it.
    public static func start(files: [String: String] = [modelURLPath: modelPath]) async throws -> ModelServer {
        let holder = Mutex<ModelServer?>(nil)
        let router = Router()
        router.get("**") { request, _ -> Response in
            guard let server = holder.withLock({ $0 }) else { return Response(status: .serviceUnavailable) }
            return try server.respond(request)
        }
        router.head("**") { request, _ -> Response in
            guard let server = holder.withLock({ $0 }) else { return Response(status: .serviceUnavailable) }
            return try server.respondToHead(request)
        }
        let server = ModelServer(files: files, server: await StandInServer.start(router))
        holder.withLock { $0 = server }
        return server
    }

    public func stop() async { await server.stop() }

    private func respondToHead(_ request: Request) throws -> Response {
        let behaviour = state.withLock { state in
            state.heads += 1
            return state.behaviour
        }
        if let status = behaviour.status { return Response(status: .init(code: status)) }
        guard let path = files[request.uri.path] else { return Response(status: .notFound) }
        let size = try behaviour.announcedSize ?? (FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        return Response(status: .ok, headers: [.contentType: "application/octet-stream", .contentLength: String(size)])
    }

    private func respond(_ request: Request) throws -> Response {
        let (behaviour, first, corrupt) = state.withLock { state -> (Behaviour, Bool, Bool) in
            state.requests += 1
            state.ranges.append(request.headers[.range] ?? "")
            return (state.behaviour, state.requests == 1, state.requests <= state.behaviour.corruptTransfers)
        }
        if let status = behaviour.status { return Response(status: .init(code: status)) }
        guard let path = files[request.uri.path] else { return Response(status: .notFound) }
        let size = (try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        var start = 0
        var status = HTTPResponse.Status.ok
        var headers: HTTPFields = [.contentType: "application/octet-stream"]
        if let range = request.headers[.range], range.hasPrefix("bytes="), let from = Int(range.dropFirst(6).split(separator: "-").first ?? "") {
            start = from
            status = .partialContent
            headers[.contentRange] = "bytes \(from)-\(size - 1)/\(size)"
        }
        headers[.contentLength] = String(size - start)
        if let tag = behaviour.linkedETag { headers[HTTPField.Name("X-Linked-Etag")!] = "\"\(tag)\"" }
        let dropAt = first ? behaviour.dropAtFraction.map { Int(Double(size) * $0) } : nil
        let stallAt = behaviour.stallAfterBytes
        return Response(
            status: status, headers: headers,
            body: ResponseBody { [self, start] writer in
                let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
                defer { try? handle.close() }
                try handle.seek(toOffset: UInt64(start))
                var sent = start
                while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty {
                    var piece = chunk
                    if corrupt, sent == start, let last = piece.indices.last { piece[last] ^= 0xFF }
                    if let limit = dropAt ?? stallAt, sent + piece.count > limit { piece = piece.prefix(max(0, limit - sent)) }
                    try await writer.write(ByteBuffer(bytes: piece))
                    sent += piece.count
                    self.state.withLock { $0.bytesSent += piece.count }
                    if let dropAt, sent >= dropAt { throw CancellationError() }  // drops the connection
                    if let stallAt, sent >= stallAt { try await Task.sleep(for: .seconds(3600)) }
                    if let delay = behaviour.chunkDelay { try await Task.sleep(for: delay) }
                }
                try await writer.finish(nil)
            })
    }
}
