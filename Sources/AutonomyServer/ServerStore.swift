import AutonomyCore
import Foundation

/// An open model-call reservation, as the dashboard lists it.
public typealias OpenReservation = (id: Int64, model: String, reservedUSD: Double, taskID: Int64?, since: Int64)

/// What `serve`'s routes ask of the queue, whichever engine holds it: `AutonomyStore` (an SQLite
/// file, on this machine's clock: its own functions answer) or `PostgresStore` (the database's
/// clock: the `now` given here is not used where the database decides the time).
public protocol ServerStore: NotificationStore {
    /// Where the queue is, as the pages name it (a path, or a URL without its password).
    var location: String { get }

    func producerName(bearer secret: String) async throws -> String?
    func enqueue(_ request: EnqueueRequest, configuration: Configuration, now: Int64, producer: ProducerPolicy?)
        async throws -> EnqueueOutcome
    func task(id: Int64) async throws -> TaskRecord?
    func tasks(matching filter: TaskFilter) async throws -> [TaskRecord]
    func status(now: Int64, source: String?) async throws -> QueueStatus

    func pendingApprovals(now: Int64, source: String?, type: String?, id: Int64?, limit: Int?) async throws
        -> [PendingApproval]
    func approval(id: Int64) async throws -> ApprovalRecord?
    func pendingApproval(token: String, seal: TokenSeal, now: Int64) async throws -> PendingApproval
    func decidedApproval(token: String, seal: TokenSeal, approvalID: Int64, now: Int64) async throws
        -> ApprovalRecord?
    func linkChannel(token: String, seal: TokenSeal) async throws -> String?
    func decisionStatement(
        approvalID: Int64, _ decision: Decision, signerKey: SSHPublicKey, verifier: DecisionVerifier,
        settings: ApprovalSettings, now: Int64
    ) async throws -> DecisionStatement
    func decide(_ signed: SignedDecision, verifier: DecisionVerifier, channel: DecisionChannel, now: Int64)
        async throws -> ApprovalRecord
    func decide(
        token: String, seal: TokenSeal, _ signed: SignedDecision, verifier: DecisionVerifier,
        channel: DecisionChannel, now: Int64
    ) async throws -> ApprovalRecord

    func session(cookie: String, verifier: DecisionVerifier, seal: TokenSeal, now: Int64) async throws
        -> OperatorSession?
    func openSession(login token: String, verifier: DecisionVerifier, seal: TokenSeal, now: Int64) async throws
        -> (OperatorSession, cookie: String)?

    func overview(configuration: Configuration, now: Int64) async throws -> Overview
    func ledger(forTask taskID: Int64) async throws -> [LedgerEntry]
    func ledgerEntries(_ query: LedgerQuery) async throws -> [LedgerEntry]
    func wholeLedgerChain() async throws -> ChainReport
    func systemMap(configuration: Configuration, since: Int64) async throws -> SystemMapReport
    /// The overrides in effect (a paused type, a raised timeout…), oldest first.
    func overrides(now: Int64) async throws -> [Override]
    func auditRuns(limit: Int) async throws -> [AuditRun]
    func budget(settings: GatewaySettings, timeZone: TimeZone, now: Int64) async throws -> BudgetStatus
    func openReservations(now: Int64) async throws -> [OpenReservation]
    func sources(configuration: Configuration) async throws -> [SourceSummary]
    func subjects(search: String?, limit: Int) async throws -> [SubjectSummary]
    func subject(_ name: String, since: Int64?, limit: Int?) async throws -> SubjectHistory?
}

extension ServerStore {
    func pendingApprovals(now: Int64, type: String? = nil, id: Int64? = nil, limit: Int? = nil) async throws
        -> [PendingApproval]
    {
        try await pendingApprovals(now: now, source: nil, type: type, id: id, limit: limit)
    }
}

/// SQLite: the store's own functions, most of them by the same names.
extension AutonomyStore: ServerStore {
    public var location: String { path }

    public func wholeLedgerChain() throws -> ChainReport { try verifyLedgerChain() }
}

/// PostgreSQL: the same answers on the database's clock.
extension PostgresStore: ServerStore {
    public nonisolated var location: String { url.description }

    public func enqueue(
        _ request: EnqueueRequest, configuration: Configuration, now: Int64, producer: ProducerPolicy?
    ) async throws -> EnqueueOutcome {
        try await enqueue(request, configuration: configuration, producer: producer)
    }

    public func status(now: Int64, source: String?) async throws -> QueueStatus {
        try await status(source: source).status
    }

    public func pendingApprovals(now: Int64, source: String?, type: String?, id: Int64?, limit: Int?) async throws
        -> [PendingApproval]
    {
        try await pendingApprovals(source: source, type: type, id: id, limit: limit).pending
    }

    public func pendingApproval(token: String, seal: TokenSeal, now: Int64) async throws -> PendingApproval {
        try await pendingApproval(token: token, seal: seal)
    }

    public func decidedApproval(token: String, seal: TokenSeal, approvalID: Int64, now: Int64) async throws
        -> ApprovalRecord?
    {
        try await decidedApproval(token: token, seal: seal, approvalID: approvalID)
    }

    public func decisionStatement(
        approvalID: Int64, _ decision: Decision, signerKey: SSHPublicKey, verifier: DecisionVerifier,
        settings: ApprovalSettings, now: Int64
    ) async throws -> DecisionStatement {
        try await decisionStatement(
            approvalID: approvalID, decision, signerKey: signerKey, verifier: verifier, settings: settings
        ).0
    }

    public func decide(_ signed: SignedDecision, verifier: DecisionVerifier, channel: DecisionChannel, now: Int64)
        async throws -> ApprovalRecord
    {
        try await decide(signed, verifier: verifier, channel: channel)
    }

    public func decide(
        token: String, seal: TokenSeal, _ signed: SignedDecision, verifier: DecisionVerifier,
        channel: DecisionChannel, now: Int64
    ) async throws -> ApprovalRecord {
        try await decide(token: token, seal: seal, signed, verifier: verifier, channel: channel)
    }

    public func session(cookie: String, verifier: DecisionVerifier, seal: TokenSeal, now: Int64) async throws
        -> OperatorSession?
    {
        try await session(cookie: cookie, verifier: verifier, seal: seal)
    }

    public func openSession(login token: String, verifier: DecisionVerifier, seal: TokenSeal, now: Int64)
        async throws -> (OperatorSession, cookie: String)?
    {
        try await openSession(login: token, verifier: verifier, seal: seal)
    }

    public func overview(configuration: Configuration, now: Int64) async throws -> Overview {
        try await overview(configuration: configuration)
    }

    public func wholeLedgerChain() async throws -> ChainReport { try await verifyLedgerChain() }

    public func budget(settings: GatewaySettings, timeZone: TimeZone, now: Int64) async throws -> BudgetStatus {
        try await budget(settings: settings, timeZone: timeZone)
    }

    public func openReservations(now: Int64) async throws -> [OpenReservation] { try await openReservations() }
}
