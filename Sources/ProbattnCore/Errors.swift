/// Errors raised by ProbattnCore when its inputs are inconsistent. Every public entry point validates its inputs and
/// throws one of these instead of trapping.
public enum ProbattnCoreError: Error, Equatable, CustomStringConvertible {
    /// A tensor has the wrong number of elements or axes, or two tensors disagree on an extent.
    case invalidShape(String)
    /// An option or scalar is out of its domain (for example a negative iteration count).
    case invalidArgument(String)

    public var description: String {
        switch self {
        case .invalidShape(let message): return "invalid shape: \(message)"
        case .invalidArgument(let message): return "invalid argument: \(message)"
        }
    }
}
