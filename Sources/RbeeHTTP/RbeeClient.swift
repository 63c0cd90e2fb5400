import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import RbeeAPI

/// How one rbee program calls another: JSON in and out, and on every hop the bearer token, the
/// correlation id and the request deadline (forwarded unchanged, never extended).
public struct RbeeClient: Sendable {
    public var token: String?
    public var correlationID: String?
    public var deadline: String?
    public let http: HTTPClient
    /// The code a connection failure is reported with (`HIVE_UNREACHABLE` towards a hive…).
    public var unreachableCode: ErrorCode

    public init(
        http: HTTPClient = .rbee, token: String?, correlationID: String? = nil, deadline: String? = nil,
        unreachableCode: ErrorCode = .unavailable
    ) {
        self.http = http
        self.token = token
        self.correlationID = correlationID
        self.deadline = deadline
        self.unreachableCode = unreachableCode
    }

    /// A request with the hop headers set. A call made on no request's behalf (a report, a
    /// probe) gets a correlation id of its own, so both ends log the same one.
    public func request(_ method: HTTPMethod, _ url: String, json: Data? = nil) -> HTTPClientRequest {
        var request = HTTPClientRequest(url: url)
        request.method = method
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        request.headers.add(name: "X-Correlation-Id", value: correlationID ?? UUID().uuidString.lowercased())
        if let deadline { request.headers.add(name: "X-Request-Deadline", value: deadline) }
        if let json {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(data: json))
        }
        return request
    }

    /// Sends a request and returns the answer's body; a non-2xx answer becomes the `RbeeError` its
    /// envelope describes, a connection failure `unreachableCode`.
    public func call(_ method: HTTPMethod, _ url: String, json: Data? = nil, timeout: Duration = .seconds(10)) async throws(RbeeError) -> Data {
        let response: HTTPClientResponse
        let body: ByteBuffer
        do {
            response = try await http.execute(request(method, url, json: json), timeout: .milliseconds(Int64(timeout.milliseconds)))
            body = try await response.body.collect(upTo: 16 << 20)
        } catch {
            throw unreachable(url, error)
        }
        let data = Data(buffer: body)
        guard (200..<300).contains(response.status.code) else {
            throw Self.error(status: Int(response.status.code), body: data, headers: response.headers, url: url)
        }
        return data
    }

    /// `call` with the answer decoded.
    public func call<T: Decodable>(
        _ method: HTTPMethod, _ url: String, json: Data? = nil, timeout: Duration = .seconds(10), as type: T.Type
    ) async throws(RbeeError) -> T {
        let data = try await call(method, url, json: json, timeout: timeout)
        do {
            return try JSONDecoder().decode(T.self, from: data)
        } catch {
            throw notRbee(url, body: data)
        }
    }

    /// Opens an SSE stream; headers are awaited for at most `timeout`, the body has no deadline
    /// (the reader's owner watches for stalls).
    public func stream(_ method: HTTPMethod, _ url: String, json: Data? = nil, timeout: Duration = .seconds(30)) async throws(RbeeError)
        -> EventStreamReader
    {
        let response: HTTPClientResponse
        do {
            response = try await http.execute(request(method, url, json: json), timeout: .milliseconds(Int64(timeout.milliseconds)))
        } catch {
            throw unreachable(url, error)
        }
        guard (200..<300).contains(response.status.code) else {
            let body = (try? await response.body.collect(upTo: 1 << 20)).map { Data(buffer: $0) } ?? Data()
            throw Self.error(status: Int(response.status.code), body: body, headers: response.headers, url: url)
        }
        return EventStreamReader(response: response, origin: Self.origin(url))
    }

    /// A peer that could not be reached, or did not answer within the call's deadline (then
    /// `details.timed_out` is true: the peer may be alive but suspended or overloaded, which a
    /// caller may judge differently from one that refused the connection).
    func unreachable(_ url: String, _ error: any Error) -> RbeeError {
        var details: [String: JSONValue] = ["url": .string(Self.origin(url))]
        if let error = error as? HTTPClientError, error == .deadlineExceeded { details["timed_out"] = .bool(true) }
        return RbeeError(unreachableCode, "cannot reach \(Self.origin(url)): \(Self.describe(error))", details: details)
    }

    /// Whether `error` is a call that got no answer within its deadline.
    public static func timedOut(_ error: any Error) -> Bool {
        (error as? RbeeError)?.details["timed_out"] == .bool(true)
    }

    /// The error an rbee error envelope (or any other error body) describes.
    public static func error(status: Int, body: Data, headers: HTTPHeaders, url: String) -> RbeeError {
        let retryAfter = headers.first(name: "Retry-After").flatMap(Int.init)
        if var error = try? JSONDecoder().decode(ErrorEnvelope.self, from: body).error {
            error.retryAfter = retryAfter
            error.status = status
            return error
        }
        // Not an rbee error body: the answer is kept (in "answer") for callers to name the peer.
        let text = String(decoding: body.prefix(300), as: UTF8.self)
        return RbeeError(
            status == 404 ? .notFound : status >= 500 ? .unavailable : .invalidRequest,
            "\(origin(url)) answered \(status)\(text.isEmpty ? "" : ": " + text)", details: ["url": .string(origin(url)), "answer": .string(text)], retryAfter: retryAfter,
            status: status)
    }

    /// A peer that answered, but not in rbee's API: another program on the port, or another
    /// version. 502, with the code a failure to reach that peer has.
    public func notRbee(_ url: String, body: Data) -> RbeeError {
        RbeeError(
            unreachableCode,
            "\(Self.origin(url)) answered, but not as rbee \(RbeeVersion.version) does (another program on that port, or another version?)",
            details: ["url": .string(Self.origin(url)), "answer": .string(String(decoding: body.prefix(200), as: UTF8.self))], status: 502)
    }

    /// Scheme, host and port: enough to say where, never a query string.
    public static func origin(_ url: String) -> String {
        let parts = url.split(separator: "/", maxSplits: 3, omittingEmptySubsequences: false)
        return parts.count >= 3 ? parts[0...2].joined(separator: "/") : url
    }

    static func describe(_ error: any Error) -> String {
        if let error = error as? HTTPClientError { return "\(error)" }
        return String(describing: error)
    }
}

/// An open SSE response read message by message.
public struct EventStreamReader {
    public let response: HTTPClientResponse
    /// Who answered (scheme, host and port), to name in errors.
    public let origin: String
    /// Made on the first read: a response body can be iterated only once, and the response may
    /// be handed on unread.
    private var body: HTTPClientResponse.Body.AsyncIterator?
    private var parser = SSEParser()
    private var ready: [SSE.Message] = []
    private var readyIndex = 0

    public init(response: HTTPClientResponse, origin: String = "the server") {
        self.response = response
        self.origin = origin
    }

    /// The next message, or nil when the server closed the stream. Throws when the connection
    /// breaks (or the reading task is cancelled).
    public mutating func next() async throws -> SSE.Message? {
        if body == nil { body = response.body.makeAsyncIterator() }
        while readyIndex >= ready.count {
            guard let chunk = try await body!.next() else { return nil }
            ready = parser.feed(chunk.readableBytesView)
            readyIndex = 0
        }
        defer { readyIndex += 1 }
        return ready[readyIndex]
    }

    /// The stream's events decoded as `Event`, with its comments, until `[DONE]` or the end of
    /// the connection. This is how every relay and client of rbee reads an event stream.
    public func events<Event: StreamEvent>(of type: Event.Type) -> ServerSentEvents<Event> {
        ServerSentEvents(reader: self)
    }
}

/// One message of a typed event stream.
public enum StreamMessage<Event: Sendable>: Sendable {
    case event(Event)
    /// A comment line: a keep-alive, or progress text for clients that skip comments.
    case comment(String)
}

/// An SSE response read as typed events (`EventStreamReader.events(of:)`). It ends at `[DONE]`
/// or when the server closes the stream; it throws when the connection breaks, and a frame that
/// is not an `Event` is an error naming the peer, never skipped.
public struct ServerSentEvents<Event: StreamEvent>: AsyncSequence {
    public typealias Element = StreamMessage<Event>
    let reader: EventStreamReader

    public struct AsyncIterator: AsyncIteratorProtocol {
        var reader: EventStreamReader
        var finished = false
        let decoder = JSONDecoder()

        public mutating func next() async throws -> StreamMessage<Event>? {
            guard !finished else { return nil }
            guard let message = try await reader.next() else {
                finished = true
                return nil
            }
            switch message {
            case .comment(let text):
                return .comment(text)
            case .data(SSE.doneData):
                finished = true
                return nil
            case .data(let json):
                if let event = Event.decodeFast(json) { return .event(event) }
                do {
                    return .event(try decoder.decode(Event.self, from: Data(json.utf8)))
                } catch {
                    finished = true
                    throw RbeeError(
                        .internalError, "unexpected event from \(reader.origin): \(json.prefix(200))",
                        details: ["peer": .string(reader.origin)])
                }
            }
        }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(reader: reader) }
}

extension HTTPClient {
    /// The client rbee's programs call each other with. Unlike `.shared`, a refused connection
    /// fails the request at once (the shared pool retries until the request's deadline, which
    /// for a download or a stream is long): callers have their own retries and must see a dead
    /// peer quickly. Room for a connection per relayed stream.
    public static let rbee: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = 1024
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.timeout.connect = .seconds(5)
        return HTTPClient(eventLoopGroup: .singletonMultiThreadedEventLoopGroup, configuration: configuration)
    }()
}
