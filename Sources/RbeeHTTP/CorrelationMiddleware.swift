import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Logging
import RbeeAPI

/// How a daemon writes an error answer: the native envelope, or — on the routes of another API
/// the daemon speaks (the queen's OpenAI routes) — that API's shape. Every 401 also carries the
/// RFC 6750 `WWW-Authenticate: Bearer` challenge, whatever the shape.
public struct ErrorRenderer: Sendable {
    let render: @Sendable (_ error: RbeeError, _ path: String, _ correlationID: String) -> Response

    public init(_ render: @escaping @Sendable (_ error: RbeeError, _ path: String, _ correlationID: String) -> Response) {
        self.render = render
    }

    public static let native = ErrorRenderer { error, _, correlationID in Response.error(error, correlationID: correlationID) }
}

/// An error a route throws after it consumed the request's body to watch for the client going
/// away: the connection cannot carry another request, so its answer says `Connection: close` (a
/// client that pooled it would otherwise send its next request into a closed socket).
public struct ConnectionSpentError: Error {
    public var error: any Error
    public init(_ error: any Error) { self.error = error }
}

/// Accepts `X-Correlation-Id` (or makes one), puts it in every log record of the request and on
/// the response, refuses a body announced larger than the cap before reading it (413), and turns
/// any error a route throws into the error answer of its route (`ErrorRenderer`).
public struct CorrelationMiddleware: RouterMiddleware {
    public typealias Context = RbeeRequestContext

    public static let header = HTTPField.Name("X-Correlation-Id")!
    let renderer: ErrorRenderer
    /// Counts each error answer by code (`rbee_<program>_errors_total`).
    let metrics: MetricRegistry?

    public init(renderer: ErrorRenderer = .native, metrics: MetricRegistry? = nil) {
        self.renderer = renderer
        self.metrics = metrics
    }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        let id = request.headers[Self.header].flatMap { Self.isAcceptable($0) ? $0 : nil } ?? UUID().uuidString.lowercased()
        context.correlationID = id
        context.logger[metadataKey: "correlation_id"] = .string(id)
        var response: Response
        do {
            if let length = request.headers[.contentLength].flatMap(Int.init), length > context.maxUploadSize { throw Self.bodyTooLarge }
            response = try await next(request, context)
        } catch {
            let rbeeError = Self.rbeeError(from: error)
            // Refusals under load (503 with Retry-After) are expected: not errors of this server.
            if rbeeError.httpStatus >= 500, rbeeError.retryAfter == nil {
                context.logger.error("request failed", metadata: ["error": "\(rbeeError)"])
            } else {
                context.logger.debug("request refused", metadata: ["error": "\(rbeeError)"])
            }
            metrics?.recordError(rbeeError.code)
            response = renderer.render(rbeeError, request.uri.path, id)
            if error is ConnectionSpentError { response.headers[.connection] = "close" }
            if let challenge = Self.challenge(for: rbeeError) { response.headers[.wwwAuthenticate] = challenge }
        }
        response.headers[Self.header] = id
        return response
    }

    /// RFC 6750 §3: the challenge of a 401, with `error="invalid_token"` for a token that does not match.
    static func challenge(for error: RbeeError) -> String? {
        switch error.code {
        case .missingAPIKey: #"Bearer realm="rbee""#
        case .invalidAPIKey: #"Bearer realm="rbee", error="invalid_token""#
        default: nil
        }
    }

    /// Ids from clients are kept only when short and printable, so logs cannot be forged.
    static func isAcceptable(_ id: String) -> Bool {
        (1...128).contains(id.utf8.count) && id.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F }
    }

    static let bodyTooLarge = RbeeError(
        .invalidRequest, "the request body is larger than \(Validation.maxBodyBytes) bytes",
        details: ["max_bytes": .number(Double(Validation.maxBodyBytes))], status: 413)

    /// Maps thrown errors to rbee errors: Hummingbird's and NIO's own (unknown route, body too
    /// large) too.
    public static func rbeeError(from error: any Error) -> RbeeError {
        switch error {
        case let error as RbeeError:
            return error
        case let spent as ConnectionSpentError:
            return rbeeError(from: spent.error)
        case is NIOTooManyBytesError:
            return bodyTooLarge
        case let error as HTTPError:
            switch error.status {
            case .notFound: return RbeeError(.notFound, error.body ?? "no such route")
            case .contentTooLarge: return bodyTooLarge
            case .methodNotAllowed: return RbeeError(.notFound, "method not allowed on this route")
            default:
                return RbeeError(error.status.code >= 500 ? .internalError : .invalidRequest, error.body ?? error.status.reasonPhrase)
            }
        default:
            return RbeeError(.internalError, "internal error")
        }
    }
}

extension Response {
    /// The native error envelope with the status of its code (and `Retry-After` when set).
    public static func error(_ error: RbeeError, correlationID: String?) -> Response {
        var status = HTTPResponse.Status(code: error.httpStatus)
        if error.code == .cancelled { status = HTTPResponse.Status(code: 499, reasonPhrase: "Client Closed Request") }
        var response = Response.json(ErrorEnvelope(error, correlationID: correlationID), status: status)
        if let retryAfter = error.retryAfter { response.headers[.retryAfter] = String(retryAfter) }
        return response
    }

    /// A JSON body. A value that cannot be encoded is a 500 with the native envelope, never `{}`.
    public static func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes, .sortedKeys]
        do {
            return Response(
                status: status, headers: [.contentType: "application/json"],
                body: ResponseBody(byteBuffer: ByteBuffer(bytes: try encoder.encode(value))))
        } catch {
            return .error(RbeeError(.internalError, "cannot encode the answer: \(error)"), correlationID: nil)
        }
    }
}
