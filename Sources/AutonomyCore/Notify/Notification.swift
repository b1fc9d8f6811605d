import Foundation
import GRDB

/// What an alert is about.
public enum NotificationEvent: String, Sendable, Codable, CaseIterable {
    /// A dangerous task waits for a human's yes.
    case approvalNeeded = "approval_needed"
    /// A task ran out of attempts.
    case taskDead = "task_dead"
    /// A verifier could not tell whether a task succeeded; it was treated as a failure.
    case verificationInconclusive = "verification_inconclusive"
    /// Many requests wait at once: one alert stands for them all (so a flood is one message).
    case approvalsWaiting = "approvals_waiting"
    /// `autonomy notify test`.
    case test
    /// `autonomy audit --notify`: what the last audit found, by kind and severity.
    case auditReport = "audit_report"
    /// An approved proposal (`notify_owner`) calls a task type's owner; so does a fix heal
    /// applied that did not help.
    case ownerNeeded = "owner_needed"
    /// Automatic fixes on a target stopped: fixes on it did not fix.
    case healBreakerOpened = "heal_breaker_opened"
    /// Too many types are failing at once: heal applies nothing on its own until it ends.
    case healStopped = "heal_stopped"
}

/// One alert, ready for a channel: a JSON document and a one-line text.
public struct NotificationMessage: Sendable, Equatable {
    public var event: NotificationEvent
    public var text: String
    public var body: JSONValue
}

/// One queued alert on one channel (the outbox). Delivered at least once; a failed delivery is
/// retried with backoff and never blocks or loses a task.
public struct PendingNotification: Sendable, Equatable {
    public var id: Int64
    public var event: NotificationEvent
    public var channel: NotifyChannel
    public var taskID: Int64?
    public var approvalID: Int64?
    public var attempts: Int
}

extension Database {
    /// When more than `limit` approval alerts are due on a channel, replaces them all with one
    /// "requests waiting" alert (returned), so a flood of requests is one message, not thousands.
    /// Those made after `heldAfter` are left to `serve` (see `AlertDelivery.serverSendsFirst`).
    func groupApprovalAlerts(on channel: NotifyChannel, over limit: Int, now: Int64, heldAfter: Int64) throws
        -> Int64?
    {
        let due =
            try Int.fetchOne(
                self,
                sql: """
                    SELECT COUNT(*) FROM notifications INDEXED BY notifications_due
                    WHERE delivered_at IS NULL AND next_attempt_at <= ? AND event = 'approval_needed' AND channel = ?
                      AND created_at <= ?
                    """, arguments: [now, channel.rawValue, heldAfter]) ?? 0
        guard due > limit else { return nil }
        try execute(
            sql: """
                UPDATE notifications SET delivered_at = ?, last_error = 'grouped into one approvals_waiting alert'
                WHERE delivered_at IS NULL AND next_attempt_at <= ? AND event = 'approval_needed' AND channel = ?
                  AND created_at <= ?
                """, arguments: [now, now, channel.rawValue, heldAfter])
        try execute(
            sql: """
                INSERT INTO notifications (event, channel, created_at, next_attempt_at) VALUES ('approvals_waiting', ?, ?, ?)
                """, arguments: [channel.rawValue, now, now])
        return lastInsertedRowID
    }

    /// Queues an alert on every configured channel. Runs inside the caller's transaction, so the
    /// alert exists exactly when the change it reports does.
    func queueNotification(
        _ event: NotificationEvent, taskID: Int64?, approvalID: Int64?, notify: NotifySettings, now: Int64
    ) throws {
        for channel in notify.channels {
            try cachedStatement(
                sql: """
                    INSERT INTO notifications (event, channel, task_id, approval_id, created_at, next_attempt_at)
                    VALUES (?, ?, ?, ?, ?, ?)
                    """
            ).execute(arguments: [event.rawValue, channel.rawValue, taskID, approvalID, now, now])
        }
    }
}

/// How long a worker holds a notification it is delivering before another may try it.
let deliveryLease: Int64 = 5 * 60 * 1000

extension AutonomyStore {
    /// Takes the oldest due notification for delivery, holding it for a while so two processes do
    /// not send it at once (one that dies mid-send leaves it to be retried). Alerts queued for a
    /// channel the configuration no longer has are closed on the way. With `tasks`, only alerts
    /// about those tasks are taken.
    public func takeDueNotification(
        now: Int64, channels: [NotifyChannel], tasks: Set<Int64>? = nil, groupAfter: Int = 10,
        holdingApprovalAlerts: Int64? = nil, approvalsOnly: Bool = false
    ) throws -> PendingNotification? {
        // Most looks find nothing due (serve looks every 2 s): a read, so they take no write lock.
        let anyDue = try read("look for a due notification") { db in
            try Bool.fetchOne(
                db,
                sql: "SELECT EXISTS (SELECT 1 FROM notifications WHERE delivered_at IS NULL AND next_attempt_at <= ?)",
                arguments: [now]) ?? false
        }
        guard anyDue else { return nil }
        return try write("take a due notification") { db in
            let filter = tasks.map { " AND task_id IN (\($0.map(String.init).joined(separator: ",")))" } ?? ""
            // Request alerts made after this are left to `serve`.
            let heldAfter = holdingApprovalAlerts.map { now - $0 } ?? Int64.max
            while let row = try Row.fetchOne(
                db,
                sql: """
                    SELECT id, event, channel, task_id, approval_id, attempts FROM notifications
                    WHERE delivered_at IS NULL AND next_attempt_at <= ?\(filter)
                      AND NOT (event = 'approval_needed' AND created_at > ?)
                      AND (? OR event IN ('approval_needed', 'approvals_waiting'))
                    ORDER BY id LIMIT 1
                    """, arguments: [now, heldAfter, !approvalsOnly])
            {
                let id: Int64 = try row.decode(forColumn: "id")
                guard let event = NotificationEvent(rawValue: try row.decode(forColumn: "event")),
                    let channel = NotifyChannel(rawValue: try row.decode(forColumn: "channel")),
                    channels.contains(channel)
                else {
                    try db.execute(
                        sql: """
                            UPDATE notifications SET delivered_at = ?, last_error = 'the channel is no longer configured'
                            WHERE id = ?
                            """, arguments: [now, id])
                    continue
                }
                if event == .approvalNeeded,
                    let grouped = try db.groupApprovalAlerts(
                        on: channel, over: groupAfter, now: now, heldAfter: heldAfter)
                {
                    try db.execute(
                        sql: "UPDATE notifications SET next_attempt_at = ? WHERE id = ?",
                        arguments: [now + deliveryLease, grouped])
                    return PendingNotification(
                        id: grouped, event: .approvalsWaiting, channel: channel, taskID: nil, approvalID: nil,
                        attempts: 0)
                }
                try db.execute(
                    sql: "UPDATE notifications SET next_attempt_at = ? WHERE id = ?",
                    arguments: [now + deliveryLease, id])
                return PendingNotification(
                    id: id, event: event, channel: channel, taskID: try row.decode(forColumn: "task_id"),
                    approvalID: try row.decode(forColumn: "approval_id"),
                    attempts: try row.decode(forColumn: "attempts"))
            }
            return nil
        }
    }

    /// The message for a queued notification, from the current state of its task and approval.
    /// Nil when it no longer applies (the request was decided or expired meanwhile); it is then
    /// marked done. An approval alert carries a freshly issued one-click token.
    public func message(
        for notification: PendingNotification, configuration: Configuration, seal: TokenSeal = .plain, now: Int64
    ) throws -> NotificationMessage? {
        let task = try notification.taskID.flatMap { try self.task(id: $0) }
        switch notification.event {
        case .approvalNeeded:
            guard let approvalID = notification.approvalID, let task, task.state == .awaitingApproval,
                let approval = try approval(id: approvalID), approval.state == .pending, approval.expiresAt > now,
                let token = try issueToken(approvalID: approvalID, via: notification.channel, seal: seal, now: now)
            else {
                try finishObsolete(notification, now: now)
                return nil
            }
            return NotificationMessage.approvalNeeded(
                task: task, approval: approval, token: token, baseURL: configuration.approvals.baseURL,
                timeZone: configuration.timezone,
                watched: configuration.taskType(named: task.type)?.fieldsRulesName ?? [])
        case .verificationInconclusive:
            guard let task else {
                try finishObsolete(notification, now: now)
                return nil
            }
            return NotificationMessage.inconclusive(task)
        case .taskDead:
            guard let task else {
                try finishObsolete(notification, now: now)
                return nil
            }
            return NotificationMessage.taskDead(task)
        case .test:
            return NotificationMessage.test(now: now)
        case .ownerNeeded:
            guard let task, let message = NotificationMessage.ownerNeeded(proposal: task, configuration) else {
                try finishObsolete(notification, now: now)
                return nil
            }
            return message
        case .healBreakerOpened:
            guard let task, let proposal = try? Proposal(payload: task.payload),
                let breaker = try openBreakers(now: now).last(where: { $0.target == proposal.healTarget })
            else {
                try finishObsolete(notification, now: now)
                return nil
            }
            return NotificationMessage.breakerOpened(breaker)
        case .healStopped:
            guard
                let stop = try read(
                    "read the systemic stop",
                    { db in
                        try Row.fetchOne(
                            db,
                            sql: "SELECT started_at, reason FROM heal_stops WHERE ended_at IS NULL ORDER BY id LIMIT 1")
                    })
            else {
                try finishObsolete(notification, now: now)
                return nil
            }
            return NotificationMessage.healStopped(
                since: try stop.decode(forColumn: "started_at"), reason: try stop.decode(forColumn: "reason"))
        case .auditReport:
            guard let run = try latestAudit() else {
                try finishObsolete(notification, now: now)
                return nil
            }
            return NotificationMessage.auditReport(run)
        case .approvalsWaiting:
            let waiting =
                try read("count the waiting requests") { db in
                    try Int.fetchOne(
                        db, sql: "SELECT COUNT(*) FROM approvals WHERE state = 'pending' AND expires_at > ?",
                        arguments: [now])
                } ?? 0
            guard waiting > 0 else {
                try finishObsolete(notification, now: now)
                return nil
            }
            return NotificationMessage.approvalsWaiting(waiting, baseURL: configuration.approvals.baseURL)
        }
    }

    private func finishObsolete(_ notification: PendingNotification, now: Int64) throws {
        try write("drop an obsolete notification") { db in
            try db.execute(
                sql: """
                    UPDATE notifications SET delivered_at = ?, last_error = 'no longer applies' WHERE id = ?
                    """, arguments: [now, notification.id])
        }
    }

    /// Records how a delivery went: delivered, or failed and due again after a backoff that doubles
    /// from `notify.retry_backoff` up to an hour. Either way a ledger row says so.
    public func recordDelivery(
        _ notification: PendingNotification, error: String?, notify: NotifySettings, now: Int64
    ) throws {
        // A channel's own error text could echo the alert back, link and token included.
        let error = error.map(redactingTokens)
        try write("record a delivery") { db in
            let attempts = notification.attempts + 1
            let (event, detail) = notification.delivery(error: error)
            let type = try notification.taskID.flatMap {
                try String.fetchOne(db, sql: "SELECT type FROM tasks WHERE id = ?", arguments: [$0])
            }
            if let error {
                try db.execute(
                    sql: """
                        UPDATE notifications SET attempts = ?, next_attempt_at = ?, last_error = ? WHERE id = ?
                        """,
                    arguments: [attempts, notification.nextAttempt(after: now, notify: notify), error, notification.id])
            } else {
                try db.execute(
                    sql: """
                        UPDATE notifications SET attempts = ?, delivered_at = ?, last_error = NULL WHERE id = ?
                        """, arguments: [attempts, now, notification.id])
            }
            try db.appendLedger(event, at: now, taskID: notification.taskID, type: type, detail: detail)
        }
    }

    /// Queues a test alert on every configured channel.
    public func queueTestNotification(notify: NotifySettings, now: Int64) throws {
        try write("queue a test notification") { db in
            try db.queueNotification(.test, taskID: nil, approvalID: nil, notify: notify, now: now)
        }
    }
}

/// The text with every `token=...` and `#t=...` value replaced, for errors that are stored or logged.
func redactingTokens(_ text: String) -> String {
    redacting(redacting(text, after: "token="), after: "#t=")
}

private func redacting(_ text: String, after marker: String) -> String {
    var output = ""
    var rest = Substring(text)
    while let range = rest.range(of: marker) {
        output += rest[..<range.upperBound] + "[redacted]"
        rest = rest[range.upperBound...].drop { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }
    }
    return output + rest
}

extension NotificationMessage {
    /// The alert about a pending request: who asked for what, every field a rule of the type looks
    /// at (escaped), the payload's size and hash, and links to the page that shows it whole. Tokens
    /// travel in the link's fragment, which no server, proxy log or Referer header ever sees.
    static func approvalNeeded(
        task: TaskRecord, approval: ApprovalRecord, token: String, baseURL: String?, timeZone: TimeZone,
        watched: Set<String>
    ) -> NotificationMessage {
        let subject =
            task.subject.map {
                " — \"\(Visible.text($0))\" (subject from \(Visible.text(task.source ?? "the producer")))"
            } ?? ""
        let expires = Timestamp.format(approval.expiresAt, timeZone: timeZone)
        let payload = (try? JSONValue.parse(task.payload)) ?? .string(task.payload)
        var fields: [String: JSONValue] = [:]
        for name in watched.sorted() {
            if let value = payload[path: name] { fields[name] = .string(Visible.text(value.canonicalText)) }
        }
        var links: [String: JSONValue] = [:]
        if let baseURL {
            // Each page only shows the request and asks to confirm; its button POSTs the token to
            // decide. Mail scanners that open every link decide nothing.
            // The token is in the fragment: it never reaches a log, a proxy or a Referer.
            let page = "\(baseURL)/r/\(approval.id)"
            links["review"] = .string("\(page)#t=\(token)")
            links["approve"] = .string("\(page)?decision=approve#t=\(token)")
            links["reject"] = .string("\(page)?decision=reject#t=\(token)")
        }
        let shown = fields.keys.sorted().map { "\($0)=\(fields[$0]?.stringValue ?? "")" }.joined(separator: " ")
        // The hash of the payload these fields come from, not the stored column: an `approve
        // --sha256` copied from here refuses a payload that is not the one quoted.
        let sha256 = task.payload.sha256Hex
        let text =
            "approval needed: task \(task.id) \(task.type)\(subject)"
            + (shown.isEmpty ? "" : " [\(shown)]")
            + " (\(task.payload.utf8.count) bytes, sha256 \(sha256.prefix(12)); request \(approval.id), expires \(expires))"
            + (baseURL.map { " \($0)/r/\(approval.id)#t=\(token)" } ?? "")
            + " — or: autonomy approvals show \(approval.id), then autonomy approve \(approval.id) --sha256 \(sha256.prefix(12))"
        return NotificationMessage(
            event: .approvalNeeded, text: text,
            body: .object([
                "event": "approval_needed", "text": .string(text),
                "approval": .object([
                    "id": .int(approval.id), "reason": .string(Visible.text(approval.reason)),
                    "payload_sha256": .string(sha256),
                    "payload_bytes": .int(Int64(task.payload.utf8.count)),
                    "fields": .object(fields),
                    "requested_at": .string(Timestamp.format(approval.requestedAt)),
                    "expires_at": .string(Timestamp.format(approval.expiresAt)),
                    "run_at": .string(Timestamp.format(task.runAt)),
                    "links": .object(links),
                    "commands": .object([
                        "show": .string("autonomy approvals show \(approval.id)"),
                        "approve": .string(
                            "autonomy approve \(approval.id) --sha256 \(sha256.prefix(12))"),
                        "reject": .string("autonomy reject \(approval.id) --reason TEXT"),
                    ]),
                ]),
                "task": task.alertValue,
            ]))
    }

    static func approvalsWaiting(_ count: Int, baseURL: String?) -> NotificationMessage {
        let text =
            "\(count) approval requests are waiting for a decision — see: autonomy approvals"
            + (baseURL.map { " or \($0)/approvals" } ?? "")
        return NotificationMessage(
            event: .approvalsWaiting, text: text,
            body: .object([
                "event": "approvals_waiting", "text": .string(text), "waiting": .int(Int64(count)),
                "links": .object(baseURL.map { ["approvals": .string("\($0)/approvals")] } ?? [:]),
            ]))
    }

    static func taskDead(_ task: TaskRecord) -> NotificationMessage {
        let ending = task.exitCode.map { "; last exit status \($0)" } ?? ""
        let text =
            "task dead: task \(task.id) \(task.type) after \(task.attempts) attempt(s)\(ending)"
            + " — see: autonomy tasks show \(task.id)"
        return NotificationMessage(
            event: .taskDead, text: text,
            body: .object([
                "event": "task_dead", "text": .string(text), "task": task.alertValue,
            ]))
    }

    static func inconclusive(_ task: TaskRecord) -> NotificationMessage {
        let text =
            "verification inconclusive: task \(task.id) \(task.type) attempt \(task.attempts) could not be"
            + " verified, so it counted as failed — check by hand: autonomy tasks show \(task.id)"
        return NotificationMessage(
            event: .verificationInconclusive, text: text,
            body: .object(["event": "verification_inconclusive", "text": .string(text), "task": task.alertValue]))
    }

    /// Counts and kinds only: a finding's title may quote a normalised error, and an alert never
    /// carries what a handler printed. `autonomy audit` shows the whole report.
    static func auditReport(_ run: AuditSummary) -> NotificationMessage {
        let counts = Severity.allCases.compactMap { severity in
            run.counts[severity].map { "\($0) \(severity.rawValue)" }
        }
        let total = run.counts.values.reduce(0, +)
        let text =
            total == 0
            ? "audit: all clear (run \(run.id)) — see: autonomy audit"
            : "audit: \(total) finding\(total == 1 ? "" : "s") (\(counts.joined(separator: ", "))) — see: autonomy audit"
        return NotificationMessage(
            event: .auditReport, text: text,
            body: .object([
                "event": "audit_report", "text": .string(text), "run_id": .int(run.id),
                "window_start": .string(Timestamp.format(run.windowStart)),
                "window_end": .string(Timestamp.format(run.windowEnd)),
                "worst": run.counts.keys.max().map { .string($0.rawValue) } ?? .null,
                "findings": .array(
                    run.kinds.map { .object(["kind": .string($0.kind), "severity": .string($0.severity)]) }),
            ]))
    }

    /// The finding's kind and severity, never its title (which may quote what a handler printed).
    /// The owner of the type a fix proposal (`task`) is about; nil when its payload is gone.
    static func ownerNeeded(proposal task: TaskRecord, _ configuration: Configuration) -> NotificationMessage? {
        guard let proposal = try? Proposal(payload: task.payload) else { return nil }
        // A finding about the system as a whole has no type: its owner is the operator.
        let type = proposal.action.type ?? proposal.finding.subject
        return ownerNeeded(
            type: type,
            owner: type.flatMap { configuration.taskTypes[$0]?.owner } ?? (type == nil ? "operator" : nil),
            finding: proposal.finding, proposal: task.id)
    }

    static func ownerNeeded(type: String?, owner: String?, finding: Finding, proposal: Int64) -> NotificationMessage {
        let about = type.map { "task type \($0)" } ?? "the system"
        let text =
            "owner needed: \(about) (owner: \(owner.map(Visible.text) ?? "none")) has a \(finding.severity.rawValue)"
            + " \(finding.kind.rawValue) finding — see: autonomy tasks show \(proposal)"
        return NotificationMessage(
            event: .ownerNeeded, text: text,
            body: .object([
                "event": "owner_needed", "text": .string(text), "type": type.map { .string($0) } ?? .null,
                "owner": owner.map { .string(Visible.text($0)) } ?? .null,
                "finding": .object([
                    "kind": .string(finding.kind.rawValue), "severity": .string(finding.severity.rawValue),
                ]),
                "proposal": .int(proposal),
            ]))
    }

    static func breakerOpened(_ breaker: HealBreaker) -> NotificationMessage {
        let target = Visible.text(breaker.target)
        let text =
            "heal stopped fixing \(target) on its own: \(Visible.text(breaker.reason)); until \(Timestamp.format(breaker.closesAt.milliseconds)) or `autonomy heal reset \(target)`"
        return NotificationMessage(
            event: .healBreakerOpened, text: text,
            body: .object([
                "event": "heal_breaker_opened", "text": .string(text), "target": .string(target),
                "breaker": .int(breaker.id), "closes_at": .string(Timestamp.format(breaker.closesAt.milliseconds)),
            ]))
    }

    static func healStopped(since: Int64, reason: String) -> NotificationMessage {
        let text =
            "heal applies nothing on its own since \(Timestamp.format(since)): \(Visible.text(reason)); something shared may be broken (network, disk, a provider)"
        return NotificationMessage(
            event: .healStopped, text: text,
            body: .object([
                "event": "heal_stopped", "text": .string(text), "since": .string(Timestamp.format(since)),
            ]))
    }

    static func test(now: Int64) -> NotificationMessage {
        let text = "autonomy test alert at \(Timestamp.format(now)): this channel works"
        return NotificationMessage(event: .test, text: text, body: ["event": "test", "text": .string(text)])
    }
}

extension TaskRecord {
    /// What an alert says about a task: enough to decide. Never a handler's output or error text,
    /// which may hold what a handler printed (secrets included); `tasks show` has them.
    var alertValue: JSONValue {
        .object([
            "id": .int(id), "type": .string(type), "state": .string(state.rawValue),
            "source": source.map { .string(Visible.text($0)) } ?? .null,
            "subject": subject.map { .string(Visible.text($0)) } ?? .null,
            "producer_supplied": ["source", "subject"],
            "run_at": .string(Timestamp.format(runAt)),
            "payload_bytes": .int(Int64(payload.utf8.count)), "payload_sha256": .string(payloadSHA256),
            "attempts": .int(Int64(attempts)),
            "exit_code": exitCode.map { .int(Int64($0)) } ?? .null,
        ])
    }
}
