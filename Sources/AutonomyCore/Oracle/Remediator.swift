import Foundation

/// Why a proposal's action could not be applied: one line, kept as the task's error.
struct RemediationFailure: Error, CustomStringConvertible {
    var description: String
}

/// The built-in handler and verifier of `apply_remediation`: applies one catalog action of an
/// approved proposal, then checks that it took effect and, where the action is meant to end the
/// finding, that the finding no longer holds. Every change is a ledger row; the configuration
/// file is never written.
public struct Remediator: HandlerRunner {
    let store: any RemediationStore
    /// The configuration as read from the file (overrides are read fresh from the store).
    let loaded: LoadedConfiguration
    let clock: any WallClock
    /// Runs `run_remediation` commands.
    let exec: ExecRunner
    /// Settles tasks whose worker died, as work-once's recovery does (verifying first).
    let recover: @Sendable () async throws -> Void

    /// The configuration with the overrides in effect now.
    private func current(now: Int64) async throws -> Configuration {
        loaded.configuration.applying(try await store.overrides(now: now))
    }

    public func run(_ invocation: HandlerInvocation) async -> HandlerOutcome {
        let started = ContinuousClock.now
        func ended(_ status: HandlerStatus, result: JSONValue? = nil, error: String = "") -> HandlerOutcome {
            HandlerOutcome(
                status: status, stdout: result?.canonicalText ?? "", stderrTail: error,
                durationMs: (ContinuousClock.now - started).inMilliseconds)
        }
        do {
            let proposal = try Proposal(payload: invocation.task.payload)
            if case .runRemediation(let name, let argv) = proposal.action {
                return try await runCommand(name, argv: argv, for: proposal.finding, invocation)
            }
            return ended(.exited(0), result: try await apply(proposal, proposalID: invocation.task.id))
        } catch {
            return ended(.exited(1), error: "\(error)")
        }
    }

    private func runCommand(_ name: String, argv: [String], for finding: Finding, _ invocation: HandlerInvocation)
        async throws -> HandlerOutcome
    {
        guard let command = loaded.configuration.remediations[name] else {
            throw RemediationFailure(description: "no remediation \"\(name)\" is declared under remediations")
        }
        // What was approved is the command itself: a configuration changed since runs nothing.
        guard command.exec.argv == argv else {
            throw RemediationFailure(
                description:
                    "remediation \(name)'s argv changed since it was proposed; run `autonomy audit` for a proposal of the command as it is now"
            )
        }
        guard command.findings.contains(finding.kind),
            command.subjects.isEmpty || finding.subject.map(command.subjects.contains) == true
        else {
            throw RemediationFailure(
                description:
                    "remediation \(name) is not declared for \(finding.kind.rawValue) findings about \(finding.subject ?? "the system")"
            )
        }
        var type = invocation.type
        type.handler = .exec(command.exec)
        var invocation = invocation
        invocation.type = type
        invocation.timeout = command.exec.timeout ?? RemediationCommand.defaultTimeout
        return await exec.run(invocation)
    }

    /// Applies everything but `run_remediation`; returns what it did, as the task's result.
    private func apply(_ proposal: Proposal, proposalID task: Int64) async throws -> JSONValue {
        let now = clock.now()
        let configuration = try await current(now: now)
        let actor = "proposal task \(task)"
        let reason = "\(actor): \(proposal.finding.title)"
        func declared(_ name: String) throws -> TaskType {
            guard let type = configuration.taskTypes[name] else {
                throw RemediationFailure(description: "task type \(name) is not declared in the configuration")
            }
            return type
        }
        func raise(_ kind: Override.Kind, type: String?, from current: Int64, to value: Int64, lasting: Interval?)
            async throws -> JSONValue
        {
            guard value > current else { return ["unchanged": .string("already \(current) ≥ \(value)")] }
            let made = try await store.setOverride(
                kind, type: type, value: value, reason: reason, proposal: task, lasting: lasting, now: now)
            return ["override": .int(made.id), "from": .int(current), "to": .int(value)]
        }
        switch proposal.action {
        case .retryDead(let name, let since):
            _ = try declared(name)
            let sent = try await store.retryDead(type: name, since: since, by: actor, now: now)
            return [
                "retried": .array(sent.retried.map { .int($0) }),
                "payload_pruned": .array(sent.pruned.map { .int($0) }),
            ]
        case .pauseType(let name, let lasting):
            let type = try declared(name)
            guard !type.paused else { return ["unchanged": "already paused"] }
            let made = try await store.setOverride(
                .pause, type: name, value: nil, reason: reason, proposal: task, lasting: lasting, now: now)
            return ["override": .int(made.id)]
        case .resumeType(let name):
            let ended = try await store.endPauses(of: name, by: actor, reason: reason, now: now)
            return ["ended": .array(ended.map { .int($0) })]
        case .raiseTimeout(let name, let to, let lasting):
            let type = try declared(name)
            return try await raise(
                .timeout, type: name, from: type.effectiveTimeout(configuration.worker).milliseconds,
                to: to.milliseconds, lasting: lasting)
        case .raiseLease(let to, let lasting):
            return try await raise(
                .lease, type: nil, from: configuration.worker.lease.milliseconds, to: to.milliseconds, lasting: lasting)
        case .raiseMaxAttempts(let name, let to, let lasting):
            let type = try declared(name)
            return try await raise(
                .maxAttempts, type: name, from: Int64(type.effectiveMaxAttempts), to: Int64(to), lasting: lasting)
        case .expireStaleApprovals(let olderThan):
            let expired = try await store.expireStaleApprovals(olderThan: olderThan, now: now)
            return ["expired": .array(expired.map { .int($0) })]
        case .releaseStuck(let id):
            try await recover()
            let state = try await store.task(id: id)?.state.rawValue
            return ["task": .int(id), "state": state.map { .string($0) } ?? .null]
        case .notifyOwner(let name):
            let type = try declared(name)
            guard let owner = type.owner else {
                throw RemediationFailure(description: "task type \(name) has no owner to notify")
            }
            let channels = configuration.notify.channels
            guard !channels.isEmpty else {
                throw RemediationFailure(description: "no alert channel is configured under notify")
            }
            try await store.notifyOwner(proposal: task, notify: configuration.notify, now: now)
            return ["owner": .string(owner), "channels": .array(channels.map { .string($0.rawValue) })]
        case .runRemediation:
            throw RemediationFailure(description: "run_remediation runs as a command")
        }
    }

    // MARK: - The built-in verifier

    /// Did the fix fix? The action's effect is in place now, and where the action is meant to end
    /// its finding (a remediation command, expiring, releasing, resuming), the finding is checked
    /// again on the current state. Findings about history (drift, signatures) are judged again by
    /// the next audit.
    public func reevaluate(_ subject: VerificationSubject) async -> (CheckOutcome, String) {
        do {
            let proposal = try Proposal(payload: subject.task.payload)
            let now = clock.now()
            let configuration = try await current(now: now)
            if let failed = try await effectMissing(
                proposal.action, result: subject.result, exitCode: subject.task.exitCode, configuration: configuration,
                now: now)
            {
                return (.fail, failed)
            }
            switch proposal.action {
            case .runRemediation, .expireStaleApprovals, .releaseStuck, .resumeType:
                if let still = try await stillHolds(proposal.finding, configuration: configuration, now: now) {
                    return (.fail, "the finding still holds: " + still)
                }
                return (
                    .pass,
                    "\(proposal.action.name) took effect and the \(proposal.finding.kind.rawValue) finding no longer holds"
                )
            default:
                return (.pass, "\(proposal.action.name) took effect")
            }
        } catch {
            return (.error, "\(error)")
        }
    }

    /// Why the action's effect is not there now, or nil when it is.
    private func effectMissing(
        _ action: RemediationAction, result: JSONValue?, exitCode: Int?, configuration: Configuration, now: Int64
    ) async throws -> String? {
        let type = action.type.flatMap { configuration.taskTypes[$0] }
        switch action {
        case .pauseType(let name, _):
            return type?.paused == true ? nil : "\(name) is not paused"
        case .resumeType(let name):
            return type?.paused == true ? "\(name) is still paused" : nil
        case .raiseTimeout(let name, let to, _):
            let timeout = type?.effectiveTimeout(configuration.worker)
            return timeout.map { $0 >= to } == true
                ? nil : "\(name)'s timeout is \(timeout?.description ?? "unknown"), not \(to)"
        case .raiseLease(let to, _):
            return configuration.worker.lease >= to ? nil : "the lease is \(configuration.worker.lease), not \(to)"
        case .raiseMaxAttempts(let name, let to, _):
            let attempts = type?.effectiveMaxAttempts ?? 0
            return attempts >= to ? nil : "\(name) allows \(attempts) attempts, not \(to)"
        case .retryDead(let name, _):
            // The tasks the handler sent back (its result): none of them may still be dead.
            guard case .array(let items)? = result?[path: "retried"] else { return "no record of the tasks sent back" }
            let ids = items.compactMap { item -> Int64? in
                if case .int(let id) = item { return id }
                return nil
            }
            let dead = try await store.countDead(ids)
            return dead == 0
                ? nil : "\(dead) of the \(ids.count) \(name) tasks sent back \(dead == 1 ? "is" : "are") still dead"
        case .expireStaleApprovals(let olderThan):
            let stale = try await store.countStaleApprovals(olderThan: olderThan, now: now)
            return stale == 0 ? nil : "\(stale) approval request\(stale == 1 ? " is" : "s are") still pending"
        case .releaseStuck(let task):
            return try await !store.heldPastLease(task: task, now: now)
                ? nil : "task \(task) is still held under a lease that ran out"
        case .notifyOwner:
            return nil  // the alert is queued in the handler's transaction, or the handler failed
        case .runRemediation:
            // A worker that died while the command ran leaves no exit status: nothing shows it ran.
            return exitCode == 0 ? nil : "the remediation command did not finish (no exit status 0 is recorded)"
        }
    }

    /// The finding's title as it holds now, or nil when it no longer does (or cannot be judged now).
    private func stillHolds(_ finding: Finding, configuration: Configuration, now: Int64) async throws -> String? {
        switch finding.kind {
        case .missingHandler, .tierWithoutModel, .noOwner, .componentNamesUndeclaredType:
            var current = loaded
            current.configuration = configuration
            return AutonomyStore.configurationGaps(current).first {
                $0.kind == finding.kind && $0.subject == finding.subject
            }?.title
        case .staleApproval, .stuckTask:
            return try await store.stuckFindings(configuration.audit, now: now).first { $0.kind == finding.kind }?.title
        case .ledgerBroken:
            return try await store.firstBrokenLedgerRow().map { "the chain is broken at row \($0)" }
        case .pausedType:
            return configuration.taskTypes[finding.subject ?? ""]?.paused == true ? finding.title : nil
        default:
            return nil
        }
    }
}
