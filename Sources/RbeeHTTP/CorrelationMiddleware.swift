import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Logging
import RbeeAPI

/// Accepts `X-Correlation-Id` (or makes one), puts it in every log record of the request and on
/// the response, and turns any error a route throws into the native error envelope.
public struct CorrelationMiddleware: RouterMiddleware {
    public typealias Context = RbeeRequestContext

    public static let header = HTTPField.Name("X-Correlation-Id")!

    public init() {}

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        let id = request.headers[Self.header].flatMap { Self.isAcceptable($0) ? $0 : nil } ?? UUID().uuidString.lowercased()
        context.correlationID = id
        context.logger[metadataKey: "correlation_id"] = .string(id)
        var response: Response
        do {
            response = try await next(request, context)
        } catch {
            let rbeeError = Self.rbeeError(from: error)
            // Refusals under load (503 with Retry-After) are expected: not errors of this server.
            if rbeeError.httpStatus >= 500, rbeeError.retryAfter == nil {
                context.logger.error("request failed", metadata: ["error": "\(rbeeError)"])
            } else {
                context.logger.debug("request refused", metadata: ["error": "\(rbeeError)"])
            }
            response = Response.error(rbeeError, correlationID: id)
        }
        response.headers[Self.header] = id
        return response
    }

    /// Ids from clients are kept only when short and printable, so logs cannot be forged.
    static func isAcceptable(_ id: String) -> Bool {
        (1...128).contains(id.utf8.count) && id.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F }
    }

    static let bodyTooLarge = RbeeError(
        .invalidRequest, "the request body is larger than \(Validation.maxBodyBytes) bytes",
        details: ["max_bytes": .number(Double(Validation.maxBodyBytes))], status: 413)

    /// Maps thrown errors to rbee errors: Hummingbird's own (unknown route, body too large) too.
    static func rbeeError(from error: any Error) -> RbeeError {
        switch error {
        case let error as RbeeError:
            return error
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
