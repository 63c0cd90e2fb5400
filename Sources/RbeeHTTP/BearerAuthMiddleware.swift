import HTTPTypes
import Hummingbird
import NIOCore
import RbeeAPI

/// Requires `Authorization: Bearer <token>` on every route but `/health`.
public struct BearerAuthMiddleware: RouterMiddleware {
    public typealias Context = RbeeRequestContext
    let token: APIToken?

    public init(token: APIToken?) { self.token = token }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let token, request.uri.path != "/health" else { return try await next(request, context) }
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer ") else {
            throw RbeeError(.missingAPIKey, "this route needs an API token: send Authorization: Bearer <token>")
        }
        guard token.matches(String(header.dropFirst("Bearer ".count))) else {
            throw RbeeError(.invalidAPIKey, "the API token is not valid")
        }
        return try await next(request, context)
    }
}
