import Foundation
import Hummingbird
import NIOCore
import NIOFoundationCompat
import RbeeAPI

/// The one way rbee's daemons read request bodies: JSON, decoded into the route's type, every
/// failure a 400 that names the field. Types that validate themselves (`init(from:)` throwing an
/// `RbeeError`, as `InferenceRequest` does) report every field error at once; for plain
/// `Decodable` types a missing or mistyped field is named by its path.
public struct RbeeRequestDecoder: RequestDecoder {
    public init() {}

    public func decode<T: Decodable>(_ type: T.Type, from request: Request, context: some RequestContext) async throws -> T {
        let buffer = try await request.body.collect(upTo: context.maxUploadSize)
        return try Self.decode(type, from: Data(buffer: buffer))
    }

    /// Decodes `data`, mapping decoding failures to field errors.
    public static func decode<T: Decodable>(_ type: T.Type, from data: Data) throws(RbeeError) -> T {
        do {
            return try JSONDecoder().decode(T.self, from: data)
        } catch let error as RbeeError {
            throw error
        } catch let DecodingError.keyNotFound(key, context) {
            throw RbeeError.invalid([.init(field: path(context.codingPath + [key]), message: "required")])
        } catch let DecodingError.typeMismatch(expected, context) {
            throw RbeeError.invalid([.init(field: path(context.codingPath), message: "must be \(describe(expected))")])
        } catch let DecodingError.valueNotFound(expected, context) {
            throw RbeeError.invalid([.init(field: path(context.codingPath), message: "must be \(describe(expected)), not null")])
        } catch let DecodingError.dataCorrupted(context) where !context.codingPath.isEmpty {
            throw RbeeError.invalid([.init(field: path(context.codingPath), message: context.debugDescription)])
        } catch {
            throw RbeeError.invalid([.init(field: "body", message: "is not valid JSON")])
        }
    }

    static func path(_ keys: [any CodingKey]) -> String {
        guard !keys.isEmpty else { return "body" }
        var path = ""
        for key in keys {
            if let index = key.intValue {
                path += "[\(index)]"
            } else {
                path += (path.isEmpty ? "" : ".") + key.stringValue
            }
        }
        return path
    }

    static func describe(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: "a string"
        case is Bool.Type: "a boolean"
        case is Int.Type, is Int32.Type, is Int64.Type, is UInt32.Type: "an integer"
        case is Double.Type, is Float.Type: "a number"
        case is [Any].Type: "an array"
        default: "an object"
        }
    }
}

extension Request {
    /// Collects the body (413 past the context's cap) and decodes it with the context's decoder.
    /// The collected body stays on the request, so a streaming answer may still watch the
    /// connection with `consumeWithCancellationOnInboundClose` (SWIFT-NOTES trap 1).
    public mutating func decodeBody<T: Decodable>(as type: T.Type = T.self, context: RbeeRequestContext) async throws -> T {
        _ = try await collectBody(upTo: context.maxUploadSize)
        return try await context.requestDecoder.decode(type, from: self, context: context)
    }
}
