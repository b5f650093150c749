import ProbattnSession
import ProbattnTesting
import Testing

/// Roles, as the session core enforces them for every front door.
@Suite("Authorization")
struct AuthorizationTests {
    let alice = Principal(identity: "alice", role: .annotate)
    let bob = Principal(identity: "bob", role: .annotate)
    let viewer = Principal(identity: "vera", role: .view)
    let admin = Principal(identity: "root", role: .admin)

    private func open(_ h: SessionHarness, _ id: String, as principal: Principal) throws {
        try h.execute(.openImage(imageID: id, classes: ["object", "background"], annotator: nil, sourcePath: nil,
                                 publishPNG: false, bytes: try Scene.png()), as: principal)
    }

    private func click(_ id: String, _ annotator: String) -> RequestBody {
        .feedback(imageID: id, annotator: annotator, clicks: [WireClick(x: 80, y: 60, className: "object")])
    }

    @Test func aViewerMayReadButNotChange() throws {
        let h = SessionHarness(pipeline: defaultPipeline)
        try open(h, "img", as: alice)
        #expect(errorCode { try h.execute(.getMask(imageID: "img", format: .rle), as: viewer) } == nil)
        #expect(errorCode { try h.execute(click("img", "vera"), as: viewer) } == .forbidden)
        #expect(errorCode { try open(h, "mine", as: viewer) } == .forbidden)
        #expect(errorCode { try h.execute(.closeImage(imageID: "img"), as: viewer) } == .forbidden)
        #expect(try h.mask("img").version == 0)
    }

    @Test func anAnnotatorActsOnlyAsItself() throws {
        let h = SessionHarness(pipeline: defaultPipeline)
        try open(h, "img", as: alice)
        #expect(h.core.summaries().first?.openedBy == "alice", "the opener is the identity")
        try h.execute(click("img", "alice"), as: alice)
        #expect(errorCode { try h.execute(click("img", "alice"), as: bob) } == .forbidden, "bob writing as alice")
        #expect(errorCode { try h.execute(.undo(imageID: "img", annotator: "alice"), as: bob) } == .forbidden)
        #expect(errorCode { try h.execute(.undo(imageID: "img", annotator: "bob"), as: bob) } == .nothingToUndo,
                "bob's own undo finds no click of his")
        #expect(errorCode { try h.execute(.closeImage(imageID: "img"), as: bob) } == .forbidden, "not the opener")
        #expect(errorCode { try h.execute(.closeImage(imageID: "img"), as: alice) } == nil)
    }

    @Test func listingsShowOwnSessionsAndAdminSeesAll() throws {
        let h = SessionHarness(pipeline: defaultPipeline)
        try open(h, "a", as: alice)
        try open(h, "b", as: bob)
        try h.execute(click("b", "alice"), as: alice)
        func listed(_ p: Principal) throws -> [String] {
            guard case .sessions(let list) = try h.execute(.listSessions, as: p) else { return [] }
            return list.map(\.imageID)
        }
        #expect(try listed(alice) == ["a", "b"], "opened a, clicked in b")
        #expect(try listed(bob) == ["b"])
        #expect(try listed(viewer) == [])
        #expect(try listed(admin) == ["a", "b"])
        #expect(errorCode { try h.execute(.closeImage(imageID: "a"), as: admin) } == nil, "admin closes anything")
    }
}
