import Foundation

/// What the model gateway asks of a store: the day's money, reservations against the cap, and
/// their settlement. Kept by the SQLite file (`AutonomyStore`, an IMMEDIATE transaction) or by
/// PostgreSQL (`PostgresStore`, the budget's row locked), so several hosts share one cap.
public protocol BudgetStore: Sendable {
    /// Spend plus open reservations in the cap's window as it stands at `now`.
    func committedUSD(settings: GatewaySettings, timeZone: TimeZone, now: Int64) async throws -> Double
    /// Reserves a paid call's worst-case cost against the window's spend plus open reservations:
    /// the call's id, or nil when it would pass `settings.dailyCapUSD` (nothing written then).
    func reserve(
        model: ModelSettings, amountUSD: Double, taskID: Int64?, settings: GatewaySettings, timeZone: TimeZone,
        now: Int64, timeout: Interval
    ) async throws -> Int64?
    /// Settles a call at its real cost (or, without usage, at its reservation), with a ledger row
    /// for its task; with `charged` false, released at no cost.
    func settle(
        callID: Int64, costUSD: Double?, inputTokens: Int?, outputTokens: Int?, latencyMs: Int64, outcome: String?,
        charged: Bool, now: Int64
    ) async throws
    /// The tier of the last successful call made for a task (for escalation).
    func lastCallTier(taskID: Int64) async throws -> ModelTier?
}

extension AutonomyStore: BudgetStore {
    public func committedUSD(settings: GatewaySettings, timeZone: TimeZone, now: Int64) throws -> Double {
        try budget(settings: settings, timeZone: timeZone, now: now).committedUSD
    }

    public func reserve(
        model: ModelSettings, amountUSD: Double, taskID: Int64?, settings: GatewaySettings, timeZone: TimeZone,
        now: Int64, timeout: Interval
    ) throws -> Int64? {
        try reserve(
            model: model, amountUSD: amountUSD, taskID: taskID, capUSD: settings.dailyCapUSD,
            window: settings.window.bounds(now, timeZone), now: now, timeout: timeout)
    }
}
