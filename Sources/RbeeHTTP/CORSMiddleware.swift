import HTTPTypes
import Hummingbird

/// Cross-origin access for browsers, for the origins an operator allows (`--cors-origin`; none by
/// default: same-origin only). A preflight (`OPTIONS` with `Access-Control-Request-Method`) from an
/// allowed origin is answered here, before authentication, with the methods and headers allowed;
/// any answer to an allowed origin names it in `Access-Control-Allow-Origin`. Another origin gets
/// no CORS header at all, so the browser keeps the answer from its page.
public struct CORSOriginMiddleware: RouterMiddleware {
    public typealias Context = RbeeRequestContext
    let origins: Set<String>

    public init(origins: [String]) { self.origins = Set(origins) }

    static let allowMethods = "GET, POST, PUT, DELETE, OPTIONS"
    static let allowHeaders = "Authorization, Content-Type, X-Correlation-Id, X-Request-Deadline"
    static let exposeHeaders = "X-Correlation-Id, X-Task-Id, Retry-After"

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard !origins.isEmpty, let origin = request.headers[.origin], origins.contains(origin) else {
            return try await next(request, context)
        }
        if request.method == .options, request.headers[.accessControlRequestMethod] != nil {
            var response = Response(status: .noContent)
            response.headers[.accessControlAllowOrigin] = origin
            response.headers[.accessControlAllowMethods] = Self.allowMethods
            response.headers[.accessControlAllowHeaders] = request.headers[.accessControlRequestHeaders] ?? Self.allowHeaders
            response.headers[.accessControlMaxAge] = "600"
            response.headers[.vary] = "Origin"
            return response
        }
        var response = try await next(request, context)
        response.headers[.accessControlAllowOrigin] = origin
        response.headers[.accessControlExposeHeaders] = Self.exposeHeaders
        response.headers[.vary] = "Origin"
        return response
    }
}
