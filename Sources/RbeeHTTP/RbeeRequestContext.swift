import HTTPTypes
import Hummingbird
import NIOCore
import RbeeAPI

/// The request context of every rbee daemon: Hummingbird's core storage plus the request's
/// correlation id, set by `CorrelationMiddleware` before any route runs.
public struct RbeeRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public var correlationID = ""
    /// The event loop of the request's connection, where its streamed answer runs.
    public let executor: EventLoopExecutor
    /// The client's address, for logs that must name who asked (refused authentications).
    public let remote: SocketAddress?
    public var remoteAddress: String? { remote?.ipAddress }

    public init(source: Source) {
        self.coreContext = .init(source: source)
        self.executor = EventLoopExecutor(source.channel.eventLoop)
        self.remote = source.channel.remoteAddress
    }

    /// Bodies are collected by the routes themselves, with `Validation.maxBodyBytes`.
    public var maxUploadSize: Int { Validation.maxBodyBytes }

    /// Request bodies are read through `Request.decodeBody(as:context:)` and this decoder only.
    public var requestDecoder: RbeeRequestDecoder { RbeeRequestDecoder() }
}
