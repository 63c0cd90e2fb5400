import Foundation
import RbeeAPI
import Testing

/// One typed error body on every wire: what the envelope, the error events and the progress
/// streams carry, and what every hop decodes back.
@Suite struct RbeeErrorTests {
    func json(_ value: some Encodable) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    @Test func knownCodesAnswerWithTheirStatusAndUnknownOnesRoundTrip() throws {
        #expect(ErrorCode.queueFull.httpStatus == 429)
        #expect(ErrorCode.insufficientRAM.httpStatus == 507)
        #expect(ErrorCode.jobExists.httpStatus == 409)
        let newer = try JSONDecoder().decode(ErrorCode.self, from: Data(#""SOMETHING_NEW""#.utf8))
        #expect(newer.rawValue == "SOMETHING_NEW")
        #expect(newer.httpStatus == 500)
        #expect(try json(newer) == #""SOMETHING_NEW""#)
        #expect(!ErrorCode.known.contains(newer) && ErrorCode.known.contains(.streamStalled))
    }

    @Test func theEnvelopeCarriesDetailsAndFieldErrorsTyped() throws {
        let error = RbeeError.invalid([.init(field: "max_tokens", message: "must be between 1 and 32768, got 0"), .init(field: "prompt", message: "required")])
        let wire = try json(ErrorEnvelope(error, correlationID: "c-1"))
        #expect(
            wire
                == #"{"error":{"code":"INVALID_REQUEST","correlation_id":"c-1","details":{"errors":[{"field":"max_tokens","message":"must be between 1 and 32768, got 0"},{"field":"prompt","message":"required"}]},"message":"invalid request: max_tokens: must be between 1 and 32768, got 0; prompt: required"}}"#)
        let decoded = try JSONDecoder().decode(ErrorEnvelope.self, from: Data(wire.utf8))
        #expect(decoded.error == error)
        #expect(decoded.error.fieldErrors.map(\.field) == ["max_tokens", "prompt"])
        #expect(decoded.error.details.isEmpty, "field errors live in their own property, not in details")
        #expect(decoded.correlationID == "c-1")
        #expect(try json(ErrorEnvelope(RbeeError(.notFound, "no such route"), correlationID: nil)) == #"{"error":{"code":"NOT_FOUND","details":{},"message":"no such route"}}"#)
    }

    @Test func errorEventsCarryTheSameBody() throws {
        let error = RbeeError(.insufficientRAM, "needs 300 MiB", details: ["bytes_needed": 314_572_800, "bytes_available": 1024])
        #expect(
            try json(InferenceEvent.error(error))
                == #"{"code":"INSUFFICIENT_RAM","details":{"bytes_available":1024,"bytes_needed":314572800},"message":"needs 300 MiB","type":"error"}"#)
        #expect(try json(TaskEvent.error(RbeeError(.cancelled, "gone"))) == #"{"code":"CANCELLED","message":"gone","type":"error"}"#)
        #expect(try json(DownloadProgress.failed(error)).contains(#""stage":"error""#))
        for event in [TaskEvent.error(error)] {
            #expect(try JSONDecoder().decode(TaskEvent.self, from: Data(json(event).utf8)) == event)
        }
        let loading = LoadingProgress.failed(RbeeError(.loadingTimeout, "slow"))
        #expect(try JSONDecoder().decode(LoadingProgress.self, from: Data(json(loading).utf8)) == loading)
    }

    @Test func anEventThatCannotBeEncodedBecomesTheStreamsErrorEvent() throws {
        let stats = GenerationStats(tokensOut: 1, promptTokens: 1, ttftMs: .nan, decodeMs: 0, tokensPerSec: 0, stopReason: .eos)
        let frame = SSE.frame(InferenceEvent.end(stats))
        #expect(frame.hasPrefix("data: {") && frame.hasSuffix("}\n\n"))
        let decoded = try JSONDecoder().decode(InferenceEvent.self, from: Data(frame.dropFirst(6).dropLast(2).utf8))
        guard case .error(let error) = decoded else {
            Issue.record("expected an error event, got \(decoded)")
            return
        }
        #expect(error.code == .internalError && error.message.hasPrefix("cannot encode an event"))
    }
}
