import AsyncAlgorithms
import HTTPTypes
import Hummingbird
import NIOCore
import RbeeAPI

/// Builds SSE responses. Headers go out at once; frames follow as the source yields them, with a
/// keep-alive comment whenever the stream is otherwise silent for `keepAlive`.
public enum EventStreamResponse {
    public static let headers: HTTPFields = [
        .contentType: "text/event-stream", .cacheControl: "no-cache", HTTPField.Name("X-Accel-Buffering")!: "no",
        // The server closes the connection after a stream (disconnect detection consumes the
        // request side), so clients must not pool it.
        .connection: "close",
    ]

    private enum Item: Sendable {
        case frame(String)
        case keepAlive
        case end
    }

    /// Streams `frames` (already SSE-encoded, the last one `[DONE]`) until the source ends or the
    /// client goes away. A client disconnect cancels the writer promptly, even while the source is
    /// silent, and `onEnd` then runs: it is where the work behind the stream is cancelled.
    /// With `keepAlive`, a timer is merged in; pass nil when the source ticks by itself (the hot
    /// inference path, where every hop per token counts).
    ///
    /// `request` must have had its body collected (SWIFT-NOTES trap 1).
    /// The body runs on the event loop of the request's connection (`EventLoopExecutor`).
    public static func make<Frames: AsyncSequence & Sendable>(
        request: Request, context: RbeeRequestContext, keepAlive: Duration?, frames: Frames, onEnd: @escaping @Sendable () -> Void = {}
    ) -> Response where Frames.Element == String, Frames.Failure == Never {
        let executor = context.executor
        return Response(
            status: .ok, headers: headers,
            body: ResponseBody { writer in
                defer { onEnd() }
                do {
                    try await request.body.consumeWithCancellationOnInboundClose { _ in
                        guard let keepAlive else {
                            try await withTaskExecutorPreference(executor) {
                                for await frame in frames { try await writer.write(ByteBuffer(string: frame)) }
                            }
                            return
                        }
                        let ticks = AsyncTimerSequence(interval: keepAlive, clock: .continuous).map { _ in Item.keepAlive }
                        let items = chain(frames.map { Item.frame($0) }, [Item.end].async)
                        for await item in merge(items, ticks) {
                            switch item {
                            case .frame(let frame): try await writer.write(ByteBuffer(string: frame))
                            case .keepAlive: try await writer.write(ByteBuffer(string: SSE.keepAlive))
                            case .end: return
                            }
                        }
                    }
                } catch {
                    // The client went away or the write failed: nothing more can reach it.
                    return
                }
                try await writer.finish(nil)
            })
    }

    /// Streams the frames `work` produces, with `work` running inside the response body as a
    /// structured child of the request: a client that goes away (or a failed write) cancels it,
    /// and the response ends once both the frames and `work` have ended. `work` must end
    /// `frames` (the last one `[DONE]`) however it ends. Both run on the event loop of the
    /// request's connection (`EventLoopExecutor`), and so does what `work` starts.
    ///
    /// `request` must have had its body collected (SWIFT-NOTES trap 1).
    public static func make<Frames: AsyncSequence & Sendable>(
        request: Request, context: RbeeRequestContext, frames: Frames, running work: @escaping @Sendable () async -> Void
    ) -> Response where Frames.Element == String, Frames.Failure == Never {
        let executor = context.executor
        return Response(
            status: .ok, headers: headers,
            body: ResponseBody { writer in
                do {
                    try await request.body.consumeWithCancellationOnInboundClose { _ in
                        try await withTaskExecutorPreference(executor) {
                            try await withThrowingTaskGroup(of: Void.self) { group in
                                group.addTask { await work() }
                                for await frame in frames { try await writer.write(ByteBuffer(string: frame)) }
                                try await group.waitForAll()
                            }
                        }
                    }
                } catch {
                    // The client went away or the write failed: nothing more can reach it.
                    return
                }
                try await writer.finish(nil)
            })
    }
}
