import RbeeAPI

/// What a request's stream carries: its events, and keep-alive ticks while it waits or runs,
/// so the SSE writer needs no timer of its own.
public enum EngineOutput: Sendable, Equatable {
    case event(InferenceEvent)
    case keepAlive
}
