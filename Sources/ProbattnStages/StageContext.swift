import Logging

/// What every stage call gets besides its input: where to log, where to record timings, how many threads the call
/// may use, and (for the propagator) which of two equally near clicks wins. Built by the session core for each
/// request (its budget taken from the core's `CorePool`, its tie rule from `sessions.conflict_policy`); a value, so a
/// stage may hand it on to the helpers it calls.
public struct StageContext: Sendable {
    /// The request's logger (its metadata names the request).
    public var logger: Logger
    /// Where a stage records the durations of its own steps (nil: not recorded).
    public var metrics: (any StageMetrics)?
    /// How many threads this call may use.
    public var budget: ComputeBudget
    /// For the propagator: which of two clicks of different classes equally near a pixel gives it its class.
    public var clickTieBreak: ClickTieBreak

    public init(logger: Logger, metrics: (any StageMetrics)? = nil, budget: ComputeBudget = .single,
                clickTieBreak: ClickTieBreak = .later) {
        self.logger = logger
        self.metrics = metrics
        self.budget = budget
        self.clickTieBreak = clickTieBreak
    }

    /// The context of a call outside any request (tools, tests): one thread, no metrics.
    public static let standalone = StageContext(logger: Logger(label: "probattn.stage"))

    /// The same context with another budget.
    public func with(budget: ComputeBudget) -> StageContext {
        var copy = self
        copy.budget = budget
        return copy
    }

    /// The same context with another tie rule.
    public func with(clickTieBreak: ClickTieBreak) -> StageContext {
        var copy = self
        copy.clickTieBreak = clickTieBreak
        return copy
    }
}

/// Which of two clicks of different classes, equally near a pixel, gives it its class (a pixel of two click discs, a
/// pixel of a token split between clicks). The propagator gets its clicks in log order (the oldest first) whatever
/// the rule, so its last click is always the newest; the rule is the session's `conflict_policy`.
public enum ClickTieBreak: String, Sendable, Equatable, CaseIterable {
    /// The later click in the list (`latest_wins`).
    case later
    /// The earlier click in the list (`first_wins`).
    case earlier

    /// Whether a click at `distance` from a pixel takes it from the nearest click so far, at `nearest`, when the
    /// clicks are visited in list order: a nearer click always does, an equally near one only under `later`.
    @inline(__always)
    public func takes<Distance: Comparable>(_ distance: Distance, over nearest: Distance) -> Bool {
        distance < nearest || (distance == nearest && self == .later)
    }
}

/// Receives the durations a stage measures (the session core's `StageStatistics` implements it for the `health`
/// reply). Must be thread-safe and cheap: called on the click path.
public protocol StageMetrics: Sendable {
    /// Records one duration of the step `name`, in seconds.
    func record(_ name: String, seconds: Double)
}
