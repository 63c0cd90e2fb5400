import Hummingbird

extension Router where Context == RbeeRequestContext {
    /// A router with the middleware every rbee daemon uses, outermost first: CORS for the allowed
    /// `corsOrigins` (preflights answered before anything else), correlation ids and the error
    /// answers (`errors` chooses their shape by route), then bearer-token auth (every route but
    /// `/health`). Error answers are counted by code in `metrics`.
    public static func rbee(
        token: APIToken?, errors: ErrorRenderer = .native, metrics: MetricRegistry? = nil, corsOrigins: [String] = []
    ) -> Router<RbeeRequestContext> {
        let router = Router(context: RbeeRequestContext.self)
        if !corsOrigins.isEmpty { router.add(middleware: CORSOriginMiddleware(origins: corsOrigins)) }
        router.add(middleware: CorrelationMiddleware(renderer: errors, metrics: metrics))
        router.add(middleware: BearerAuthMiddleware(token: token))
        return router
    }
}
