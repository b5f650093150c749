#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension Float {
    /// e^self through the C library (no Foundation).
    var exponential: Float { expf(self) }
    /// ln(self) through the C library.
    var logarithm: Float { logf(self) }
}

extension Double {
    /// e^self through the C library.
    var exponential: Double { exp(self) }
}
