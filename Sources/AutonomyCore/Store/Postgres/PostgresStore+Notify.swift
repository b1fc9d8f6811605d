import Foundation
import PostgresNIO

/// The alert outbox on PostgreSQL: every host sends what is due, each alert taken by one host at
/// a time (`FOR UPDATE SKIP LOCKED`, then held for `deliveryLease`). Times are the database's.
extension PostgresStore: NotificationStore {
    public func takeDueNotification(
        now: Int64, channels: [NotifyChannel], tasks: Set<Int64>?, groupAfter: Int,
        holdingApprovalAlerts: Int64? = nil, approvalsOnly: Bool = false
    ) async throws -> PendingNotification? {
        let only = tasks.map { Array($0) }
        // Only this host's channels: another host may have others, and sends on those itself.
        let mine = channels.map(\.rawValue)
        return try await write("take a due notification", ledger: false) { transaction in
            let now = transaction.now
            // Request alerts made after this are left to `serve`.
            let heldAfter = holdingApprovalAlerts.map { now - $0 } ?? Int64.max
            while let row = try await transaction.rows(
                """
                SELECT id, event, channel, task_id, approval_id, attempts FROM notifications
                WHERE delivered_at IS NULL AND next_attempt_at <= \(now) AND channel = ANY(\(mine)::text[])
                  AND (\(only)::bigint[] IS NULL OR task_id = ANY(\(only)::bigint[]))
                  AND NOT (event = 'approval_needed' AND created_at > \(heldAfter))
                  AND (\(!approvalsOnly) OR event IN ('approval_needed', 'approvals_waiting'))
                ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED
                """
            ).first {
                let (id, eventName, channelName, taskID, approvalID, attempts) = try row.decode(
                    (Int64, String, String, Int64?, Int64?, Int).self)
                guard let event = NotificationEvent(rawValue: eventName),
                    let channel = NotifyChannel(rawValue: channelName)
                else {
                    try await transaction.query(
                        """
                        UPDATE notifications SET delivered_at = \(now), last_error = 'an alert this autonomy does not know'
                        WHERE id = \(id)
                        """)
                    continue
                }
                if event == .approvalNeeded,
                    let grouped = try await transaction.groupApprovalAlerts(
                        on: channel, over: groupAfter, heldAfter: heldAfter)
                {
                    return PendingNotification(
                        id: grouped, event: .approvalsWaiting, channel: channel, taskID: nil, approvalID: nil,
                        attempts: 0)
                }
                try await transaction.query(
                    "UPDATE notifications SET next_attempt_at = \(now + deliveryLease) WHERE id = \(id)")
                return PendingNotification(
                    id: id, event: event, channel: channel, taskID: taskID, approvalID: approvalID, attempts: attempts)
            }
            return nil
        }
    }

    /// The message for a taken alert (`AutonomyStore.message`). An approval alert carries a freshly
    /// issued one-click token, for `serve` on any host to answer; an audit's, the counts and kinds
    /// of the last run; heal's, the owner, the breaker or the systemic stop. One that no longer
    /// applies is closed as such.
    public func message(
        for notification: PendingNotification, configuration: Configuration, seal: TokenSeal = .plain, now: Int64
    ) async throws -> NotificationMessage? {
        let message: NotificationMessage? = try await write("prepare an alert", ledger: false) { transaction in
            var task: TaskRecord?
            if let id = notification.taskID { task = try await transaction.task(id: id) }
            switch notification.event {
            case .approvalNeeded:
                guard let approvalID = notification.approvalID, let task, task.state == .awaitingApproval,
                    let approval = try await transaction.approval(id: approvalID), approval.state == .pending,
                    approval.expiresAt > transaction.now,
                    let token = try await transaction.issueToken(
                        approvalID: approvalID, via: notification.channel, seal: seal)
                else { return nil }
                return NotificationMessage.approvalNeeded(
                    task: task, approval: approval, token: token, baseURL: configuration.approvals.baseURL,
                    timeZone: configuration.timezone,
                    watched: configuration.taskType(named: task.type)?.fieldsRulesName ?? [])
            case .verificationInconclusive: return task.map(NotificationMessage.inconclusive)
            case .taskDead: return task.map(NotificationMessage.taskDead)
            case .test: return NotificationMessage.test(now: transaction.now)
            case .approvalsWaiting:
                let waiting =
                    try await transaction.rows(
                        """
                        SELECT count(*)::bigint FROM approvals WHERE state = 'pending' AND expires_at > \(transaction.now)
                        """
                    ).first?.decode(Int.self) ?? 0
                return waiting > 0
                    ? NotificationMessage.approvalsWaiting(waiting, baseURL: configuration.approvals.baseURL) : nil
            case .auditReport:
                return try await transaction.latestAudit().map(NotificationMessage.auditReport)
            case .ownerNeeded:
                return task.flatMap { NotificationMessage.ownerNeeded(proposal: $0, configuration) }
            case .healBreakerOpened:
                guard let task, let proposal = try? Proposal(payload: task.payload),
                    let breaker = try await transaction.breakers(open: true, target: proposal.healTarget).last
                else { return nil }
                return NotificationMessage.breakerOpened(breaker)
            case .healStopped:
                guard
                    let (since, reason) = try await transaction.rows(
                        "SELECT started_at, reason FROM heal_stops WHERE ended_at IS NULL ORDER BY id LIMIT 1"
                    ).first?.decode((Int64, String).self)
                else { return nil }
                return NotificationMessage.healStopped(since: since, reason: reason)
            }
        }
        if message == nil {
            try await write("drop an obsolete notification", ledger: false) { transaction in
                try await transaction.query(
                    """
                    UPDATE notifications SET delivered_at = \(transaction.now), last_error = 'no longer applies'
                    WHERE id = \(notification.id)
                    """)
            }
        }
        return message
    }

    public func recordDelivery(
        _ notification: PendingNotification, error: String?, notify: NotifySettings, now: Int64
    ) async throws {
        // A channel's own error text could echo the alert back, link and token included.
        let error = error.map(redactingTokens)
        try await write("record a delivery") { transaction in
            let now = transaction.now
            let (event, detail) = notification.delivery(error: error)
            if let error {
                try await transaction.query(
                    """
                    UPDATE notifications SET attempts = \(notification.attempts + 1),
                           next_attempt_at = \(notification.nextAttempt(after: now, notify: notify)),
                           last_error = \(error)
                    WHERE id = \(notification.id)
                    """)
            } else {
                try await transaction.query(
                    """
                    UPDATE notifications SET attempts = \(notification.attempts + 1), delivered_at = \(now),
                           last_error = NULL
                    WHERE id = \(notification.id)
                    """)
            }
            var type: String?
            if let id = notification.taskID { type = try await transaction.task(id: id)?.type }
            try await transaction.appendLedger(event, taskID: notification.taskID, type: type, detail: detail)
        }
    }

    /// Queues a test alert on every configured channel.
    public func queueTestNotification(notify: NotifySettings) async throws {
        try await write("queue a test notification", ledger: false) { transaction in
            try await transaction.queueNotification(.test, taskID: nil, notify: notify)
        }
    }
}

extension PostgresTransaction {
    /// When more than `limit` approval alerts are due on a channel, replaces them with one
    /// "requests waiting" alert (returned), as on SQLite.
    /// Those made after `heldAfter` are left to `serve` (see `AlertDelivery.serverSendsFirst`).
    nonisolated(nonsending) func groupApprovalAlerts(on channel: NotifyChannel, over limit: Int, heldAfter: Int64)
        async throws -> Int64?
    {
        let due =
            try await rows(
                """
                SELECT count(*)::bigint FROM notifications
                WHERE delivered_at IS NULL AND next_attempt_at <= \(now) AND event = 'approval_needed'
                  AND channel = \(channel.rawValue) AND created_at <= \(heldAfter)
                """
            ).first?.decode(Int.self) ?? 0
        guard due > limit else { return nil }
        try await query(
            """
            UPDATE notifications SET delivered_at = \(now), last_error = 'grouped into one approvals_waiting alert'
            WHERE delivered_at IS NULL AND next_attempt_at <= \(now) AND event = 'approval_needed'
              AND channel = \(channel.rawValue) AND created_at <= \(heldAfter)
            """)
        return try await rows(
            """
            INSERT INTO notifications (event, channel, created_at, next_attempt_at)
            VALUES ('approvals_waiting', \(channel.rawValue), \(now), \(now + deliveryLease))
            RETURNING id
            """
        ).first?.decode(Int64.self)
    }
}
