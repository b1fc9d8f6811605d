import Foundation
import GRDB

/// One line of `autonomy doctor`: what was looked at, how it stands, and how to fix it.
public struct DoctorCheck: Sendable, Codable, Equatable {
    public enum Status: String, Sendable, Codable, Comparable {
        case ok, warn, fail

        public static func < (left: Status, right: Status) -> Bool {
            [Status.ok, .warn, .fail].firstIndex(of: left)! < [Status.ok, .warn, .fail].firstIndex(of: right)!
        }
    }

    public var check: String
    public var status: Status
    public var message: String
    /// What to do about it; nil when there is nothing to do.
    public var fix: String?

    public init(_ check: String, _ status: Status, _ message: String, fix: String? = nil) {
        self.check = check
        self.status = status
        self.message = message
        self.fix = fix
    }
}

/// Tells an operator whether the installation is healthy, and how to fix what is not. It only
/// reads: the database is opened read-only (and not at all if its schema is not current), systemd
/// is asked with `systemctl show`, the gate's socket with a `connect`.
public struct Doctor: Sendable {
    /// What the configuration loader answered: the loaded configuration, or why it could not load.
    public var loaded: Result<LoadedConfiguration, ConfigError>
    /// The configuration file, when one was named or found (also when it failed to load).
    public var configPath: String?
    public var databasePath: String
    public var now: Int64
    /// The worker's Unix user, as the units and the package name it.
    public var workerUser = FileTrust.workerUser
    public var gateSocket: String
    /// `systemctl show -p LoadState,UnitFileState,ActiveState UNIT`'s lines, or nil where systemd
    /// is not running (a container, a workspace).
    public var systemd: (@Sendable (String) -> [String: String]?)?
    /// How many of the newest ledger rows are checked against each other.
    public var recentLedgerRows = 10_000

    /// Runnable tasks may wait this long for the every-minute worker before it is a warning, and
    /// five times as long before it is a failure.
    public static let workerLate = Interval.minutes(3)

    public init(
        loaded: Result<LoadedConfiguration, ConfigError>, configPath: String?, databasePath: String, now: Int64,
        gateSocket: String, systemd: (@Sendable (String) -> [String: String]?)?
    ) {
        self.loaded = loaded
        self.configPath = configPath
        self.databasePath = databasePath
        self.now = now
        self.gateSocket = gateSocket
        self.systemd = systemd
    }

    public func examine() -> [DoctorCheck] {
        var checks = [configuration()]
        let configuration = try? loaded.get().configuration
        // Before doctor opens the database itself: its read-only connection makes the -wal and -shm
        // (and cannot remove them when it closes).
        let folder = stateFolder()
        let (database, reader) = openDatabase()
        checks.append(database)
        checks.append(folder)
        checks.append(worker())
        checks.append(contentsOf: units())
        var readings: DoctorReadings?
        if let reader, let configuration {
            do {
                readings = try reader.read { db in try self.readings(db, configuration) }
            } catch {
                checks.append(DoctorCheck("database", .fail, "cannot read it: \(error)", fix: "autonomy status"))
            }
        }
        return checks + fromReadings(readings, configuration, databaseRead: reader != nil)
    }

    /// The checks that follow from what the database says (when it could be read), then trust,
    /// alerts and the gate: the same for either engine.
    func fromReadings(_ readings: DoctorReadings?, _ configuration: Configuration?, databaseRead: Bool)
        -> [DoctorCheck]
    {
        var checks: [DoctorCheck] = []
        if let readings, let configuration {
            checks += [
                lastWorkerRun(readings), ledger(readings.recentChain), tasks(readings),
                budget(readings, configuration),
            ]
            if readings.fingerprint != nil { checks.append(sharedMap(readings)) }
        }
        if let configuration {
            checks.append(signers(configuration))
            checks.append(alerts(configuration, databaseRead ? readings : nil))
        }
        checks.append(gate())
        return checks
    }

    /// Who may own the files that decide trust: whoever runs doctor, except the worker's user (as
    /// which the README runs it on a server), for whom only root will do: a file the worker owns
    /// is one every handler can rewrite.
    private var trustedOwner: uid_t {
        guard let worker = getpwnam(workerUser), worker.pointee.pw_uid == geteuid() else { return geteuid() }
        return 0
    }

    // MARK: - The configuration

    func configuration() -> DoctorCheck {
        switch loaded {
        case .failure(let error):
            return DoctorCheck(
                "config", .fail, error.description,
                fix: "fix the file, then `autonomy config check` (it names the key and what it expects)")
        case .success(let loaded):
            guard let path = loaded.path else {
                return DoctorCheck(
                    "config", .warn, "no configuration file: built-in defaults, so every task type is refused",
                    fix:
                        "install one: `sudo install -m 0640 -o root -g \(workerUser) config.example.json /etc/autonomy/autonomy.json`, and set AUTONOMY_CONFIG"
                )
            }
            do {
                try FileTrust.check(path, what: "the configuration", user: trustedOwner)
            } catch {
                return DoctorCheck(
                    "config", .fail, error.description,
                    fix:
                        "sudo chown root:\(workerUser) \(Self.shellWord(path)) && sudo chmod 0640 \(Self.shellWord(path)) (and no folder above it writable by others)"
                )
            }
            let types = loaded.configuration.taskTypes.count
            let warnings =
                loaded.warnings.isEmpty ? "" : "; \(loaded.warnings.count) warning(s): `autonomy config check`"
            return DoctorCheck(
                "config", loaded.warnings.isEmpty ? .ok : .warn, "\(path): valid, \(types) task type(s)\(warnings)",
                fix: loaded.warnings.isEmpty ? nil : "autonomy config check")
        }
    }

    // MARK: - The database

    /// The `database` check's failure for tasks whose payload was rewritten (`alteredPayloads`).
    static func alteredCheck(_ altered: [Int64]) -> DoctorCheck {
        let listed = altered.prefix(5).map(String.init).joined(separator: ", ")
        return DoctorCheck(
            "database", .fail,
            "task(s) \(listed)\(altered.count > 5 ? " and \(altered.count - 5) more" : "") hold a payload that does not hash to the SHA-256 it was enqueued with: the database was changed outside autonomy",
            fix:
                "stop the timers; find who could write it, then cancel those tasks (`autonomy tasks cancel ID`) or restore the last backup"
        )
    }

    /// The tasks not yet finished whose payload does not hash to their stored SHA-256 (a row
    /// rewritten by hand, guard and all): the firewall refuses to run or decide them; this names them.
    static func alteredPayloads(_ db: Database) throws -> [Int64] {
        let rows = try Row.fetchCursor(
            db,
            sql: """
                SELECT id, payload, payload_sha256 FROM tasks
                WHERE state IN ('queued', 'awaiting_approval', 'running', 'verifying', 'blocked') AND payload <> ''
                ORDER BY id
                """)
        var altered: [Int64] = []
        while let row = try rows.next() {
            // A value of another type is an edit too, never a trap.
            guard let id = try? row.decode(Int64.self, atIndex: 0) else { continue }
            let payload = (try? row.decode(String.self, atIndex: 1)) ?? ""
            if payload.sha256Hex != (try? row.decode(String.self, atIndex: 2)) { altered.append(id) }
        }
        return altered
    }

    private func openDatabase() -> (DoctorCheck, DatabaseQueue?) {
        guard FileManager.default.fileExists(atPath: databasePath) else {
            return (
                DoctorCheck(
                    "database", .fail, "\(databasePath) does not exist",
                    fix: "check AUTONOMY_DATABASE / --database; the first `autonomy work-once` or `enqueue` creates it"),
                nil
            )
        }
        var isFolder: ObjCBool = false
        if FileManager.default.fileExists(atPath: databasePath, isDirectory: &isFolder), isFolder.boolValue {
            return (
                DoctorCheck(
                    "database", .fail, "\(databasePath) is a folder, not a database file",
                    fix:
                        "point AUTONOMY_DATABASE / --database at a file in it, e.g. \(Self.shellWord(databasePath + "/autonomy.db"))"
                ),
                nil
            )
        }
        var settings = GRDB.Configuration()
        settings.readonly = true
        settings.busyMode = .timeout(5)
        do {
            let reader = try DatabaseQueue(path: databasePath, configuration: settings)
            let (applied, quick, triggers, altered) = try reader.read { db in
                (
                    try Migrations.migrator.appliedIdentifiers(db),
                    try String.fetchAll(db, sql: "PRAGMA quick_check"),
                    try AutonomyStore.foreignSchema(db, path: databasePath),
                    try Self.alteredPayloads(db)
                )
            }
            let known = Set(Migrations.migrator.migrations)
            if !applied.isSubset(of: known) {
                return (
                    DoctorCheck(
                        "database", .fail,
                        "\(databasePath) was written by a newer autonomy (schema \(applied.subtracting(known).sorted().joined(separator: ", ")))",
                        fix: "install that newer autonomy; this one must not write to the file"),
                    nil
                )
            }
            guard quick == ["ok"] else {
                return (
                    DoctorCheck(
                        "database", .fail, "PRAGMA quick_check: \(quick.prefix(3).joined(separator: "; "))",
                        fix:
                            "stop the timers, copy the file aside, restore the last backup (`sqlite3 \(Self.shellWord(databasePath)) .recover` saves what it can)"
                    ),
                    nil
                )
            }
            if let triggers, applied == known {
                return (
                    DoctorCheck(
                        "database", .fail, triggers.description,
                        fix:
                            "stop the timers; find who could write the file (its owner, group and folder), then restore the last backup; `autonomy ledger verify` shows whether rows were rewritten too"
                    ),
                    reader  // the checks that read it still run: they show what else was changed
                )
            }
            if !altered.isEmpty, applied == known { return (Self.alteredCheck(altered), reader) }
            if applied != known {
                return (
                    DoctorCheck(
                        "database", .warn,
                        "schema behind this autonomy: \(known.subtracting(applied).count) migration(s) pending",
                        fix: "the next `autonomy work-once` applies them (as the worker user)"),
                    nil
                )
            }
            return (DoctorCheck("database", .ok, "\(databasePath): reachable, schema current, quick_check ok"), reader)
        } catch {
            return (
                DoctorCheck(
                    "database", .fail, "cannot open \(databasePath): \(error)",
                    fix:
                        "run doctor as the worker user (`sudo -u \(workerUser) autonomy doctor`), or check the file's owner and mode"
                ),
                nil
            )
        }
    }

    private func stateFolder() -> DoctorCheck {
        let folder =
            (databasePath as NSString).deletingLastPathComponent.isEmpty
            ? FileManager.default.currentDirectoryPath : (databasePath as NSString).deletingLastPathComponent
        var info = stat()
        guard stat(folder, &info) == 0 else {
            return DoctorCheck(
                "state-folder", .fail, "\(folder): \(String(cString: strerror(errno)))",
                fix: "sudo systemd-tmpfiles --create (it makes /var/lib/autonomy, 0770, owned by \(workerUser))")
        }
        let mode = info.st_mode & 0o7777
        let owner = getpwuid(info.st_uid).map { String(cString: $0.pointee.pw_name) } ?? "uid \(info.st_uid)"
        let shown = "\(folder): owner \(owner), mode \(String(mode, radix: 8))"
        if mode & 0o002 != 0 {
            return DoctorCheck(
                "state-folder", .fail, "\(shown): anyone may add or replace files in it, the database's included",
                fix: "sudo chmod 0770 \(Self.shellWord(folder))")
        }
        var file = stat()
        // A folder where the database should be is the database check's to report.
        if stat(databasePath, &file) == 0, file.st_mode & S_IFMT == S_IFDIR {
            return DoctorCheck("state-folder", .ok, shown)
        }
        // In the worker's own folder (a service install), the database must be the worker's too.
        if stat(databasePath, &file) == 0, let worker = getpwnam(workerUser), info.st_uid == worker.pointee.pw_uid,
            file.st_uid != worker.pointee.pw_uid
        {
            return DoctorCheck(
                "state-folder", .fail,
                "\(databasePath) is not the worker's (owner uid \(file.st_uid)): it cannot write its queue",
                fix: "sudo chown \(workerUser):\(workerUser) \(databaseFiles)")
        }
        if stat(databasePath, &file) == 0, file.st_mode & 0o007 != 0 {
            return DoctorCheck(
                "state-folder", .fail,
                "\(databasePath): mode \(String(file.st_mode & 0o7777, radix: 8)): every user may read the queue and its payloads",
                fix:
                    "sudo chmod 0600 \(databaseFiles) (0660 with store.group_access)"
            )
        }
        if mode & 0o005 != 0 {
            return DoctorCheck(
                "state-folder", .warn, "\(shown): other users may list it (the database itself is private)",
                fix: "sudo chmod 0770 \(Self.shellWord(folder))")
        }
        return DoctorCheck("state-folder", .ok, shown)
    }

    /// The database and those of its `-wal` and `-shm` files that exist, for a command to name: the
    /// last connection to close removes them, so they are there only while something has it open.
    private var databaseFiles: String {
        ([databasePath]
            + ["-wal", "-shm"].map { databasePath + $0 }.filter { FileManager.default.fileExists(atPath: $0) })
            .map(Self.shellWord).joined(separator: " ")
    }

    /// `path` as one word of a shell command a reader may paste: as it is when it holds nothing a
    /// shell reads specially, else in single quotes; a relative path that starts with `-` gets a
    /// `./` in front, so no command reads it as an option.
    static func shellWord(_ path: String) -> String {
        if path.hasPrefix("-") { return shellWord("./" + path) }
        let plain = path.unicodeScalars.allSatisfy {
            $0.isASCII
                && ($0.properties.isAlphabetic || $0.properties.numericType != nil
                    || "/._-+:@,%=".unicodeScalars.contains($0))
        }
        // A word that starts with `=` is a path lookup in zsh: quoted too.
        return plain && !path.isEmpty && !path.hasPrefix("=")
            ? path : "'" + path.replacingOccurrences(of: "'", with: #"'\''"#) + "'"
    }

    func worker() -> DoctorCheck {
        guard getpwnam(workerUser) != nil else {
            return DoctorCheck(
                "worker-user", .warn, "no user \(workerUser): not installed as a system service here",
                fix: "sudo systemd-sysusers (the package and `make install` ship its sysusers.d file)")
        }
        return DoctorCheck("worker-user", .ok, "user \(workerUser) exists")
    }

    // MARK: - systemd

    func units() -> [DoctorCheck] {
        guard let systemd else {
            return [
                DoctorCheck(
                    "units", .warn, "systemd is not running here: nothing starts the worker every minute",
                    fix: "on the server: `sudo systemctl enable --now autonomy-worker.timer`")
            ]
        }
        var checks: [DoctorCheck] = []
        for unit in ["autonomy-worker.timer", "autonomy-gate.socket"] {
            guard let properties = systemd(unit), properties["LoadState"] == "loaded" else {
                checks.append(
                    DoctorCheck(
                        "units", unit.hasSuffix(".timer") ? .fail : .warn, "\(unit) is not installed",
                        fix: "install the package, or `sudo make install` then `sudo systemctl daemon-reload`"))
                continue
            }
            let enabled = properties["UnitFileState"] ?? "?"
            let active = properties["ActiveState"] ?? "?"
            if enabled == "enabled", active == "active" {
                checks.append(DoctorCheck("units", .ok, "\(unit): enabled, active"))
            } else {
                checks.append(
                    DoctorCheck(
                        "units", unit.hasSuffix(".timer") ? .fail : .warn, "\(unit): \(enabled), \(active)",
                        fix: "sudo systemctl enable --now \(unit)"))
            }
        }
        return checks
    }

    /// The gate's socket, looked at without connecting (a connection starts an `autonomy gate`).
    private func gate() -> DoctorCheck {
        var info = stat()
        if lstat(gateSocket, &info) == 0, info.st_mode & S_IFMT == S_IFSOCK {
            return DoctorCheck("gate", .ok, "\(gateSocket) is there")
        }
        return DoctorCheck(
            "gate", .warn, "no socket at \(gateSocket): producers of other users cannot enqueue",
            fix: "sudo systemctl enable --now autonomy-gate.socket")
    }

    // MARK: - What the database says

    /// Reads everything the database-backed checks need, in one read transaction.
    private func readings(_ db: Database, _ configuration: Configuration) throws -> DoctorReadings {
        var readings = DoctorReadings(now: now)
        readings.lastClaim = try Int64.fetchOne(
            db, sql: "SELECT at FROM ledger WHERE event = 'claimed' ORDER BY id DESC LIMIT 1")
        if let oldest = try Row.fetchOne(
            db,
            // Only what the worker would claim: a type paused by an override waits on purpose.
            sql: """
                SELECT COUNT(*) AS n, MIN(run_at) AS since FROM tasks INDEXED BY tasks_claim_order
                WHERE state = 'queued' AND run_at <= ? AND type NOT IN (SELECT value FROM json_each(?))
                """,
            arguments: [
                now,
                JSONValue.array(
                    configuration.applying(try db.activeOverrides(now: now)).pausedTypes.map { .string($0) }
                ).canonicalText,
            ])
        {
            readings.runnable = oldest["n"]
            readings.oldestRunnable = oldest["since"]
        }
        readings.recentChain = try AutonomyStore.verifyRecentChain(db, rows: recentLedgerRows)
        readings.dead = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM tasks WHERE state = 'dead'") ?? 0
        // A young installation has no shelfware yet: only a ledger older than the window can say.
        let since = try Int64.fetchOne(db, sql: "SELECT at FROM ledger ORDER BY id LIMIT 1") ?? now
        readings.shelfware =
            since < now - AutonomyStore.shelfwareAfter.milliseconds ? try db.shelfware(configuration, now: now) : []
        let settings = configuration.gateway
        if !settings.models.isEmpty {
            let window = settings.window.bounds(now, configuration.timezone)
            readings.committedUSD =
                try AutonomyStore.spentUSD(db: db, window: window, now: now)
                + AutonomyStore.reservedUSD(db: db, now: now)
        }
        if let failing = try Row.fetchOne(
            db,
            sql: """
                SELECT COUNT(*) AS n, MAX(last_error) AS error FROM notifications
                INDEXED BY notifications_due WHERE delivered_at IS NULL AND attempts > 0
                """)
        {
            readings.undeliveredAlerts = failing["n"]
            readings.lastAlertError = failing["error"]
        }
        readings.lastDelivered = try Int64.fetchOne(db, sql: "SELECT MAX(delivered_at) FROM notifications")
        return readings
    }

    private func lastWorkerRun(_ readings: DoctorReadings) -> DoctorCheck {
        let now = readings.now
        let by = readings.host.map { " by this host (\(Visible.text($0)))" } ?? ""
        let claimText =
            readings.lastClaim.map { "the last claim\(by) \(Interval.between($0, now)) ago" }
            ?? (readings.host == nil ? "no task ever claimed" : "no task claimed\(by) in 7 days")
        guard let since = readings.oldestRunnable else {
            return DoctorCheck("worker", .ok, "nothing runnable is waiting (\(claimText))")
        }
        let waited = Interval.between(since, now)
        let status: DoctorCheck.Status =
            waited.milliseconds > Self.workerLate.milliseconds * 5
            ? .fail : waited.milliseconds > Self.workerLate.milliseconds ? .warn : .ok
        let message = "\(readings.runnable) runnable task(s), the oldest waiting \(waited); \(claimText)"
        return DoctorCheck(
            "worker", status, message,
            fix: status == .ok
                ? nil
                : "is the timer running? `systemctl status autonomy-worker.timer`, `journalctl -u autonomy-worker -p warning`"
        )
    }

    /// The budget as the gateway counts it: settled calls, abandoned and open reservations.
    private func budget(_ readings: DoctorReadings, _ configuration: Configuration) -> DoctorCheck {
        let settings = configuration.gateway
        guard let committed = readings.committedUSD, !settings.models.isEmpty else {
            return DoctorCheck("budget", .ok, "no model configured")
        }
        let text = String(format: "$%.2f of the $%.2f cap committed", committed, settings.dailyCapUSD)
        if committed >= settings.dailyCapUSD {
            return DoctorCheck(
                "budget", .warn, "\(text): model tasks wait for the next window",
                fix: "raise gateway.daily_cap_usd, or wait; `autonomy budget` shows who spent it")
        }
        return DoctorCheck("budget", .ok, text)
    }

    /// On PostgreSQL: whether every host applies the same rules to the one queue.
    private func sharedMap(_ readings: DoctorReadings) -> DoctorCheck {
        guard readings.otherMaps.isEmpty else {
            return DoctorCheck(
                "hosts", .fail,
                "\(readings.otherMaps.map(Visible.text).joined(separator: ", ")) run\(readings.otherMaps.count == 1 ? "s" : "") another map than this host: task types, approvals, the budget, producers, alerts or allowed_signers differ",
                fix:
                    "deploy the same configuration file (apart from worker, database, store and serve) and allowed_signers to every host"
            )
        }
        return DoctorCheck("hosts", .ok, "every host seen in the last day runs this host's map")
    }

    private func ledger(_ report: ChainReport) -> DoctorCheck {
        if let broken = report.firstBroken {
            return DoctorCheck(
                "ledger", .fail, "the chain breaks at row \(broken.id): \(broken.reason)",
                fix:
                    "`autonomy ledger verify` for the whole report; the database was edited outside autonomy: restore it from a backup and find out who could write it"
            )
        }
        if report.rows == 0 { return DoctorCheck("ledger", .ok, "the ledger is empty") }
        // Consistent is not authenticated: a writer of the file could rewrite a whole tail. The
        // journal's anchors (`ledger anchor`) are what such a rewrite cannot match.
        return DoctorCheck(
            "ledger", .ok,
            "the newest \(report.rows) row(s) chain consistently (`autonomy ledger verify` checks them all, `autonomy ledger anchor` against the journal)"
        )
    }

    private func tasks(_ readings: DoctorReadings) -> DoctorCheck {
        let shelfware = readings.shelfware
        let text =
            "\(readings.dead) dead task(s); \(shelfware.count) type(s) with no success in 30 days"
            + (shelfware.isEmpty ? "" : " (\(shelfware.prefix(5).joined(separator: ", ")))")
        if readings.dead > 0 {
            return DoctorCheck(
                "tasks", .warn, text,
                fix: "`autonomy tasks list --state dead`, then `autonomy tasks retry ID` once the cause is fixed")
        }
        return DoctorCheck(
            "tasks", shelfware.isEmpty ? .ok : .warn, text,
            fix: shelfware.isEmpty ? nil : "`autonomy map` shows them; remove a type nobody uses from the configuration"
        )
    }

    // MARK: - Trust and alerts

    private func signers(_ configuration: Configuration) -> DoctorCheck {
        guard let path = configuration.approvals.allowedSigners else {
            return DoctorCheck(
                "signers", .fail, "approvals.allowed_signers is not set: no one can approve a task that waits",
                fix:
                    "`autonomy operator init` prints your line; put it in /etc/autonomy/allowed_signers and name that file in approvals.allowed_signers"
            )
        }
        guard FileManager.default.fileExists(atPath: path) else {
            return DoctorCheck(
                "signers", .fail, "\(path) does not exist: no one can approve a task that waits",
                fix: "`autonomy operator init` prints your line: `echo 'LINE' | sudo tee -a \(Self.shellWord(path))`")
        }
        do {
            let signers = try AllowedSigners.load(path: path)
            guard !signers.entries.isEmpty else {
                return DoctorCheck(
                    "signers", .fail, "\(path) lists no signer",
                    fix:
                        "`autonomy operator init` prints your line: `echo 'LINE' | sudo tee -a \(Self.shellWord(path))`"
                )
            }
            try FileTrust.check(path, what: "allowed_signers", user: trustedOwner)
            return DoctorCheck("signers", .ok, "\(path): \(signers.entries.count) signer(s)")
        } catch {
            return DoctorCheck(
                "signers", .fail, "\(error)",
                fix: "sudo chown root:root \(Self.shellWord(path)) && sudo chmod 0644 \(Self.shellWord(path))")
        }
    }

    private func alerts(_ configuration: Configuration, _ readings: DoctorReadings?) -> DoctorCheck {
        let notify = configuration.notify
        guard notify.command != nil || notify.webhook != nil else {
            return DoctorCheck(
                "alerts", .warn, "no alert channel: nobody is told when a task waits for approval or dies",
                fix: "set notify.command or notify.webhook in the configuration")
        }
        guard let readings else { return DoctorCheck("alerts", .warn, "the database could not be read") }
        if readings.undeliveredAlerts > 0 {
            let error = readings.lastAlertError ?? "?"
            return DoctorCheck(
                "alerts", .warn,
                "\(readings.undeliveredAlerts) alert(s) not delivered yet; the last error: \(error.prefix(200))",
                fix: "`autonomy notify test` sends one now and prints the channel's answer")
        }
        let last =
            readings.lastDelivered.map { "the last delivered \(Interval(milliseconds: readings.now - $0)) ago" }
            ?? "none sent yet"
        return DoctorCheck("alerts", .ok, "no delivery failing (\(last))")
    }
}

/// What the database says, read by either engine, for the checks that follow from it.
public struct DoctorReadings: Sendable {
    /// The time the readings are measured against: this machine's clock on SQLite, the database's
    /// on PostgreSQL.
    public var now: Int64
    /// On PostgreSQL, the host whose worker the readings are about (`worker.host`).
    public var host: String?
    public var lastClaim: Int64?
    /// The tasks the worker would claim now, and since when the oldest of them has waited.
    public var runnable = 0
    public var oldestRunnable: Int64?
    public var recentChain = ChainReport(rows: 0, firstBroken: nil, lastHash: LedgerChain.genesis)
    public var dead = 0
    /// Declared types with no success in 30 days (none while the ledger is younger than that).
    public var shelfware: [String] = []
    /// Spent and reserved in the budget's window; nil when no model is configured.
    public var committedUSD: Double?
    /// On PostgreSQL: this host's shared map, and the hosts seen within a day that run another.
    public var fingerprint: String?
    public var otherMaps: [String] = []
    public var undeliveredAlerts = 0
    public var lastAlertError: String?
    public var lastDelivered: Int64?

    public init(now: Int64) { self.now = now }
}

extension AutonomyStore {
    /// Checks the newest `rows` ledger rows against each other (from the hash the row before them
    /// stores): quick enough for `doctor` on any ledger; `ledger verify` checks all of them.
    static func verifyRecentChain(_ db: Database, rows: Int) throws -> ChainReport {
        guard let last = try Int64.fetchOne(db, sql: "SELECT MAX(id) FROM ledger") else {
            return ChainReport(rows: 0, firstBroken: nil, lastHash: LedgerChain.genesis)
        }
        let start = try Row.fetchOne(
            db, sql: "SELECT id, hash FROM ledger WHERE id <= ? ORDER BY id DESC LIMIT 1",
            arguments: [last - Int64(rows)]
        ).map { (id: $0[0] as Int64, hash: ($0[1] as String?) ?? "") }
        return try verifyChain(db, after: start, through: last)
    }
}
