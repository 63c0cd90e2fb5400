import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import RbeeAPI
import Synchronization

/// Requires `Authorization: Bearer <token>` on every route but `/health`. Every refusal is logged
/// at warning level with its reason (missing, malformed, wrong) and the presented token's
/// fingerprint, never the token; at most one line per client address per second.
public struct BearerAuthMiddleware: RouterMiddleware {
    public typealias Context = RbeeRequestContext
    let token: APIToken?
    let refusals = AuthRefusalLog()

    public init(token: APIToken?) { self.token = token }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let token, request.uri.path != "/health" else { return try await next(request, context) }
        guard let header = request.headers[.authorization] else {
            refused("missing", presented: nil, request, context)
            throw RbeeError(.missingAPIKey, "this route needs an API token: send Authorization: Bearer <token>")
        }
        guard header.hasPrefix("Bearer ") else {
            refused("malformed", presented: header, request, context)
            throw RbeeError(.missingAPIKey, "this route needs an API token: send Authorization: Bearer <token>")
        }
        let presented = String(header.dropFirst("Bearer ".count))
        guard token.matches(presented) else {
            refused(presented.isEmpty || presented.contains(where: \.isWhitespace) ? "malformed" : "wrong", presented: presented, request, context)
            throw RbeeError(.invalidAPIKey, "the API token is not valid")
        }
        return try await next(request, context)
    }

    private func refused(_ reason: String, presented: String?, _ request: Request, _ context: Context) {
        let client = context.remoteAddress ?? "unknown"
        guard let suppressed = refusals.admit(client: client) else { return }
        var metadata: Logger.Metadata = ["reason": "\(reason)", "client": "\(client)", "path": "\(request.uri.path)"]
        if let presented { metadata["token_fingerprint"] = "\(APIToken(presented).fingerprint)" }
        if suppressed > 0 { metadata["refusals_not_logged"] = "\(suppressed)" }
        context.logger.warning("authentication refused", metadata: metadata)
    }
}

/// Which refused authentications get a log line: one per client address per second, the others
/// counted and reported with the next line, so a flood cannot fill the disk.
final class AuthRefusalLog: Sendable {
    private struct Client {
        var loggedAt: ContinuousClock.Instant
        var notLogged: Int
    }

    private let clients = Mutex<[String: Client]>([:])
    private let interval: Duration

    init(interval: Duration = .seconds(1)) { self.interval = interval }

    /// Nil when this refusal goes unlogged; else how many of the client's went unlogged before it.
    func admit(client: String, now: ContinuousClock.Instant = .now) -> Int? {
        clients.withLock { clients in
            if var known = clients[client], now - known.loggedAt < interval {
                known.notLogged += 1
                clients[client] = known
                return nil
            }
            let notLogged = clients[client]?.notLogged ?? 0
            // Many addresses: forget those quiet for a while, so the table stays small.
            if clients.count > 4096 { clients = clients.filter { now - $0.value.loggedAt < interval } }
            clients[client] = Client(loggedAt: now, notLogged: 0)
            return notLogged
        }
    }
}
