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

/// Renewals go on from the hold's last renewal: a handler that ended just before its first renewal
/// leaves its verification a renewal due at once, not a full interval later (past the stop).
@Suite struct RenewalCadenceTests {
    @Test func verifyingGoesOnFromTheHandlersLastRenewal() {
        let claim = ContinuousClock.now
        let lease = Duration.seconds(60)
        let renewal = Duration.seconds(20)
        let hold = claim + lease - .seconds(1)  // as the worker sets it after a claim
        // Right after the claim: a renewal a third of the lease on (a second early, as the hold is).
        #expect(
            LeaseKeeper.firstRenewal(now: claim, holdUntil: hold, lease: lease, renewal: renewal)
                == claim + renewal - .seconds(1))
        // Verifying begins 19.5 s after the claim, the handler not renewed yet: the renewal is due now,
        // not at 39.5 s, after the stop (hold − kill_grace − renewal/2 = 39 s).
        let verifying = claim + .milliseconds(19_500)
        let due = LeaseKeeper.firstRenewal(now: verifying, holdUntil: hold, lease: lease, renewal: renewal)
        #expect(due <= verifying)
        #expect(due < hold - .seconds(10) - renewal / 2)
        // After a renewal (the hold moved on), the count starts from it.
        let renewed = claim + .seconds(20)
        #expect(
            LeaseKeeper.firstRenewal(
                now: renewed + .seconds(5), holdUntil: renewed + lease, lease: lease, renewal: renewal)
                == renewed + renewal)
    }
}
