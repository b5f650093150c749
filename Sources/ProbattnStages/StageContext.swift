import Logging

/// What every stage call gets besides its input: where to log, where to record timings, and how many threads the
/// call may use. Built by the session core for each request (its budget taken from the core's `CorePool`); a
/// value, so a stage may hand it on to the helpers it calls.
public struct StageContext: Sendable {
    /// The request's logger (its metadata names the request).
    public var logger: Logger
    /// Where a stage records the durations of its own steps (nil: not recorded).
    public var metrics: (any StageMetrics)?
    /// How many threads this call may use.
    public var budget: ComputeBudget

    public init(logger: Logger, metrics: (any StageMetrics)? = nil, budget: ComputeBudget = .single) {
        self.logger = logger
        self.metrics = metrics
        self.budget = budget
    }

    /// The context of a call outside any request (tools, tests): one thread, no metrics.
    public static let standalone = StageContext(logger: Logger(label: "probattn.stage"))

    /// The same context with another budget.
    public func with(budget: ComputeBudget) -> StageContext {
        var copy = self
        copy.budget = budget
        return copy
    }
}

/// Receives the durations a stage measures (the session core's `StageStatistics` implements it for the `health`
/// reply). Must be thread-safe and cheap: called on the click path.
public protocol StageMetrics: Sendable {
    /// Records one duration of the step `name`, in seconds.
    func record(_ name: String, seconds: Double)
}
