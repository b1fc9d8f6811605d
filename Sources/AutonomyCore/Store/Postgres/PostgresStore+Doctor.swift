import Foundation
import PostgresNIO

extension PostgresStore {
    /// The migrations applied to this database and those this autonomy knows, read without
    /// changing anything (a database no autonomy migrated yet has none applied).
    public func schema() async throws -> (applied: Set<String>, known: Set<String>) {
        try await read("read the schema") { transaction in
            var applied: Set<String> = []
            let exists = try await transaction.rows("SELECT to_regclass('autonomy_migrations') IS NOT NULL")
            if try exists.first?.decode(Bool.self) == true {
                for row in try await transaction.rows("SELECT name FROM autonomy_migrations") {
                    applied.insert(try row.decode(String.self))
                }
            }
            return (applied, Set(PostgresMigrations.all.map(\.name)))
        }
    }

    /// The tasks not yet finished whose payload does not hash to their stored SHA-256, as
    /// `Doctor.alteredPayloads` finds them on SQLite.
    public func alteredPayloads() async throws -> [Int64] {
        try await read("check the payloads") { transaction in
            try await transaction.rows(
                """
                SELECT id FROM tasks
                WHERE state IN ('queued', 'awaiting_approval', 'running', 'verifying', 'blocked') AND payload <> ''
                  AND encode(sha256(convert_to(payload, 'UTF8')), 'hex') <> payload_sha256
                ORDER BY id
                """
            ).map { try $0.decode(Int64.self) }
        }
    }

    /// Records the map this host runs (`LoadedConfiguration.sharedMapFingerprint`), and returns
    /// the other hosts seen within a day that run another: they apply different rules.
    public func recordMap(_ fingerprint: String) async throws -> [String] {
        try await write("record this host's map", ledger: false) { transaction in
            try await transaction.query(
                """
                INSERT INTO host_maps (host, fingerprint, seen_at) VALUES (\(self.host), \(fingerprint), \(transaction.now))
                ON CONFLICT (host) DO UPDATE SET fingerprint = excluded.fingerprint, seen_at = excluded.seen_at
                """)
            return try await transaction.differentMaps(from: fingerprint, except: self.host)
        }
    }

    /// What `doctor` reads from the database (`Doctor.readings` on SQLite), in one read-only
    /// transaction, measured against the database's clock.
    public func doctorReadings(configuration: Configuration, recentLedgerRows: Int, fingerprint: String? = nil)
        async throws -> DoctorReadings
    {
        try await read("read what doctor checks") { transaction in
            let now = transaction.now
            var readings = DoctorReadings(now: now)
            readings.host = host
            // This host's worker: its last claim, and what it would claim now (not the types other
            // hosts run, nor a paused type, which waits on purpose).
            readings.lastClaim =
                try await transaction.rows(
                    """
                    SELECT max(at) FROM ledger
                    WHERE event = 'claimed' AND at > \(now - Interval.days(7).milliseconds)
                      AND detail::jsonb ->> 'host' = \(host)
                    """
                ).first?.decode(Int64?.self) ?? nil
            // A type an override pauses waits on purpose (a schema from before overrides has none).
            var effective = configuration
            if try await transaction.rows("SELECT to_regclass('overrides') IS NOT NULL").first?.decode(Bool.self)
                == true
            {
                effective = configuration.applying(try await transaction.activeOverrides())
            }
            let paused = effective.skippedTypes
            if let row = try await transaction.rows(
                """
                SELECT count(*)::bigint, min(run_at) FROM tasks
                WHERE state = 'queued' AND run_at <= \(now) AND NOT (type = ANY(\(paused)))
                """
            ).first {
                (readings.runnable, readings.oldestRunnable) = try row.decode((Int, Int64?).self)
            }
            if let last = try await transaction.rows("SELECT max(id) FROM ledger").first?.decode(Int64?.self) {
                let start = try await transaction.rows(
                    "SELECT id, hash FROM ledger WHERE id <= \(last - Int64(recentLedgerRows)) ORDER BY id DESC LIMIT 1"
                ).first.map { try $0.decode((Int64, String).self) }
                readings.recentChain = try await Self.verifyChain(transaction, after: start.map { ($0.0, $0.1) })
            }
            readings.dead =
                try await transaction.rows("SELECT count(*)::bigint FROM tasks WHERE state = 'dead'").first?.decode(
                    Int.self) ?? 0
            // A young installation has no shelfware yet: only a ledger older than the window can say.
            let first =
                try await transaction.rows("SELECT at FROM ledger ORDER BY id LIMIT 1").first?.decode(Int64.self) ?? now
            if first < now - AutonomyStore.shelfwareAfter.milliseconds {
                let lastSuccess = try await transaction.lastSuccess(of: configuration.taskTypes.keys)
                readings.shelfware = configuration.shelfware(now: now) { lastSuccess[$0] }
            }
            let settings = configuration.gateway
            if !settings.models.isEmpty {
                readings.committedUSD = try await transaction.committedUSD(
                    window: settings.window.bounds(now, configuration.timezone), now: now)
            }
            if let row = try await transaction.rows(
                """
                SELECT count(*)::bigint, max(last_error) FROM notifications
                WHERE delivered_at IS NULL AND attempts > 0
                """
            ).first {
                (readings.undeliveredAlerts, readings.lastAlertError) = try row.decode((Int, String?).self)
            }
            readings.fingerprint = fingerprint
            if let fingerprint {
                readings.otherMaps = try await transaction.differentMaps(from: fingerprint, except: host)
            }
            readings.lastDelivered =
                try await transaction.rows("SELECT max(delivered_at) FROM notifications").first?
                .decode(Int64?.self) ?? nil
            return readings
        }
    }
}

extension PostgresTransaction {
    /// The hosts seen within a day whose map is not `fingerprint`, by name.
    nonisolated(nonsending) func differentMaps(from fingerprint: String, except host: String) async throws
        -> [String]
    {
        try await rows(
            """
            SELECT host FROM host_maps
            WHERE host <> \(host) AND fingerprint <> \(fingerprint) AND seen_at > \(now - Interval.days(1).milliseconds)
            ORDER BY host
            """
        ).map { try $0.decode(String.self) }
    }
}
