import Hummingbird
import Logging
import RbeeAPI

/// The HTTP server of an rbee daemon.
public enum DaemonServer {
    /// Refuses a non-loopback address without a token (SPEC §4), then builds the application;
    /// `onListening` gets the bound port (the one picked when `port` is 0).
    public static func application(
        router: Router<RbeeRequestContext>, host: String, port: Int, token: APIToken?, serverName: String, logger: Logger,
        onListening: @escaping @Sendable (Int) -> Void
    ) throws(RbeeError) -> Application<RouterResponder<RbeeRequestContext>> {
        try APIToken.checkBinding(host: host, token: token)
        return Application(
            router: router,
            configuration: .init(address: .hostname(host, port: port), serverName: serverName),
            onServerRunning: { channel in
                let bound = channel.localAddress?.port ?? 0
                logger.info("listening", metadata: ["host": "\(host)", "port": "\(bound)"])
                onListening(bound)
            },
            logger: logger)
    }
}
