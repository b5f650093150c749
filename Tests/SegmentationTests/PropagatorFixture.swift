import ProbattnStages
@testable import ProbattnSegmentation

extension BeliefPropagator {
    /// The default propagator with `change` made to its configuration.
    init(attention: any TokenAttention, _ change: (inout Configuration) -> Void) {
        var configuration = Configuration()
        change(&configuration)
        self.init(attention: attention, configuration: configuration)
    }
}
