import Foundation

/// A daemon's numbers from its flags and their `RBEE_…` environment variables (the flag wins),
/// each checked against its range: a value out of range, or a variable that is not a number, is
/// refused with a message naming the option or the variable and the range. Nothing wraps or
/// clamps silently (`--port 70000` does not become 4464).
public struct DaemonSettings: Sendable {
    public struct Problem: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    let environment: [String: String]
    public private(set) var problems: [String] = []

    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.environment = environment
    }

    /// A port: 0 (pick a free one) to 65535.
    public mutating func port(_ value: Int, option: String = "--port") -> Int {
        integer(value, option: option, variable: nil, range: 0...65535) ?? value
    }

    /// An integer option, or its variable when the option is absent.
    public mutating func integer(_ flag: Int?, option: String, variable: String?, range: ClosedRange<Int>) -> Int? {
        if let flag {
            guard range.contains(flag) else {
                problems.append("\(option) must be \(range.lowerBound)…\(range.upperBound), got \(flag)")
                return nil
            }
            return flag
        }
        guard let variable, let raw = environment[variable], !raw.isEmpty else { return nil }
        guard let value = Int(raw.trimmingCharacters(in: .whitespaces)) else {
            problems.append("\(variable) must be a whole number, got \"\(raw.prefix(40))\"")
            return nil
        }
        guard range.contains(value) else {
            problems.append("\(variable) must be \(range.lowerBound)…\(range.upperBound), got \(value)")
            return nil
        }
        return value
    }

    /// A duration in seconds (fractions allowed), from the option or its variable.
    public mutating func seconds(
        _ flag: Double?, option: String, variable: String, range: ClosedRange<Double> = 0.001...86_400 * 7
    ) -> Duration? {
        func checked(_ value: Double, _ name: String) -> Duration? {
            guard value.isFinite, range.contains(value) else {
                problems.append("\(name) must be \(Self.format(range.lowerBound))…\(Self.format(range.upperBound)) seconds, got \(Self.format(value))")
                return nil
            }
            return .milliseconds(Int64((value * 1000).rounded()))
        }
        if let flag { return checked(flag, option) }
        guard let raw = environment[variable], !raw.isEmpty else { return nil }
        guard let value = Double(raw.trimmingCharacters(in: .whitespaces)) else {
            problems.append("\(variable) must be a number of seconds, got \"\(raw.prefix(40))\"")
            return nil
        }
        return checked(value, variable)
    }

    /// A port range `LOW-HIGH` (1…65535, LOW ≤ HIGH) from the option or its variable; `0` is no
    /// range (`.some(nil)`: the system picks a port); nil when neither is given or it is wrong.
    public mutating func portRange(_ flag: String?, option: String, variable: String) -> ClosedRange<Int>?? {
        let (raw, name): (String, String)
        if let flag {
            (raw, name) = (flag, option)
        } else if let value = environment[variable], !value.isEmpty {
            (raw, name) = (value, variable)
        } else {
            return nil
        }
        let text = raw.trimmingCharacters(in: .whitespaces)
        if text == "0" { return .some(nil) }
        let bounds = text.split(separator: "-", omittingEmptySubsequences: false).map { Int($0) }
        guard bounds.count == 2, let low = bounds[0], let high = bounds[1], 1 <= low, low <= high, high <= 65535 else {
            problems.append("\(name) must be a port range LOW-HIGH within 1…65535 (or 0 for ports the system picks), got \"\(raw.prefix(40))\"")
            return nil
        }
        return .some(low...high)
    }

    /// Throws every problem found, in one message.
    public func check() throws(Problem) {
        if !problems.isEmpty { throw Problem(description: problems.joined(separator: "; ")) }
    }

    static func format(_ value: Double) -> String {
        value.rounded() == value && abs(value) < 1e15 ? String(Int64(value)) : String(value)
    }
}
