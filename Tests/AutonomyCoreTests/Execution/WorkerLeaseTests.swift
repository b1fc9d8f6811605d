import Foundation
import Testing

@testable import AutonomyCore

/// A lease renewal that never answers (a database connection gone silent) is not waited for.
@Suite struct RenewalTimeoutTests {
    @Test func aCallThatNeverAnswersIsLeftBehindAtItsLimit() async {
        let result = await Worker.within(.milliseconds(20)) { () async throws -> Bool in
            await withUnsafeContinuation { (_: UnsafeContinuation<Void, Never>) in }  // never resumes
            return true
        }
        guard case .failure(let error) = result else {
            Issue.record("a call that never answers gave \(result)")
            return
        }
        #expect(error is LeaseRenewalTimedOut)
    }

    @Test func anAnswerInTimeIsTaken() async {
        let result = await Worker.within(.seconds(30)) { false }
        guard case .success(let renewed) = result else {
            Issue.record("an immediate answer gave \(result)")
            return
        }
        #expect(renewed == false)
    }
}

@Suite struct RenewalAnswerRaceTests {
    /// The body's answer wins over the timer it cancels, every time (the timer once answered first).
    @Test func aQuickAnswerIsNeverTakenForATimeOut() async {
        for _ in 0..<200 {
            let result = await Worker.within(.seconds(30)) { true }
            guard case .success(true) = result else {
                Issue.record("a quick answer came back as \(result)")
                return
            }
        }
    }
}
