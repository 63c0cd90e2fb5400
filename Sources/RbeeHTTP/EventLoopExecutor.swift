import NIOCore

/// A task executor that runs jobs on one NIO event loop. A stream's response body runs on the
/// event loop of its connection: the socket reads that feed it (a relayed upstream, opened on
/// the same loop), its own work and its socket writes then share one thread, instead of handing
/// every token from the event loop to the cooperative pool and back. On a 2-core machine that
/// runs llama.cpp on both cores, each hop saved is decode time given back.
public final class EventLoopExecutor: TaskExecutor {
    public let eventLoop: any EventLoop

    public init(_ eventLoop: any EventLoop) { self.eventLoop = eventLoop }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        eventLoop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}
