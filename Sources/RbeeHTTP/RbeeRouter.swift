import Hummingbird

extension Router where Context == RbeeRequestContext {
    /// A router with the middleware every rbee daemon uses, outermost first: correlation ids and
    /// the error envelope, then bearer-token auth (every route but `/health`).
    public static func rbee(token: APIToken?) -> Router<RbeeRequestContext> {
        let router = Router(context: RbeeRequestContext.self)
        router.add(middleware: CorrelationMiddleware())
        router.add(middleware: BearerAuthMiddleware(token: token))
        return router
    }
}
