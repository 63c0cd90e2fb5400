import Hummingbird
import Logging
import NIOCore
import RbeeAPI

#if canImport(Glibc)
import Glibc
#endif

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

    /// The exit status of a daemon whose port was taken when it bound (EADDRINUSE): a worker's
    /// hive then starts it again on another port of its range.
    public static let portTakenExitCode: Int32 = 98

    /// Whether `error` (as the server's service group throws it) is a bind to a port in use.
    public static func isAddressInUse(_ error: any Error) -> Bool {
        if let error = error as? IOError { return error.errnoCode == EADDRINUSE }
        return false
    }
}
