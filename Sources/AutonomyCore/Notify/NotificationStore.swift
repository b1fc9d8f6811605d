import Foundation

/// What alert delivery asks of a store: the outbox (`notifications`), read and written by either
/// engine, so every host sends the alerts its work raised and none is sent twice at once.
public protocol NotificationStore: Sendable {
    /// Takes the oldest due alert, holding it for a while so two processes do not send it at once.
    /// With `holdingApprovalAlerts`, an alert about a request younger than that many milliseconds
    /// is left where it is (for `serve`, which sends it with a link of its own); with
    /// `approvalsOnly`, only alerts about requests are taken (what `serve` sends).
    func takeDueNotification(
        now: Int64, channels: [NotifyChannel], tasks: Set<Int64>?, groupAfter: Int, holdingApprovalAlerts: Int64?,
        approvalsOnly: Bool
    ) async throws -> PendingNotification?
    /// The message for a taken alert from the current state of its task and request; nil (and the
    /// alert closed) when it no longer applies.
    /// A request's alert carries a new one-click token, kept under `seal`.
    func message(for notification: PendingNotification, configuration: Configuration, seal: TokenSeal, now: Int64)
        async throws -> NotificationMessage?
    /// Records a delivery: done, or due again after the backoff; a ledger row either way.
    func recordDelivery(_ notification: PendingNotification, error: String?, notify: NotifySettings, now: Int64)
        async throws
}

extension AutonomyStore: NotificationStore {}

extension PendingNotification {
    /// The ledger row a delivery writes (`notified` or `notify_failed`) and its detail.
    func delivery(error: String?) -> (event: LedgerEvent, detail: JSONValue) {
        let detail: JSONValue = [
            "event": .string(event.rawValue), "channel": .string(channel.rawValue),
            "attempt": .int(Int64(attempts + 1)),
            "approval_id": approvalID.map { .int($0) } ?? .null, "error": error.map { .string($0) } ?? .null,
        ]
        return (error == nil ? .notified : .notifyFailed, detail)
    }

    /// When a failed delivery is tried again: the backoff doubles from `notify.retry_backoff`, up to an hour.
    func nextAttempt(after now: Int64, notify: NotifySettings) -> Int64 {
        now + min(notify.retryBackoff.milliseconds << min(attempts, 20), 3_600_000)
    }
}
