import Crypto
import Foundation
import GRDB
import Synchronization

/// What happened to a task, as one ledger row.
public enum LedgerEvent: String, Sendable, Codable, CaseIterable {
    case enqueued
    /// A dangerous task is waiting for a human.
    case held
    /// The type is not declared: the task will never run.
    case blocked
    case claimed
    /// The handler ended (any way): exit code, duration, error.
    case executed
    /// The handler ended; its evidence is being checked.
    case verifying
    /// One verifier's outcome and evidence.
    case verified
    case done
    case retryScheduled = "retry_scheduled"
    case dead
    case cancelled
    /// An operator sent a dead task back to the queue.
    case retried
    /// The worker holding the task stopped renewing its lease (it died).
    case leaseExpired = "lease_expired"
    /// A worker found its lease taken over and dropped its outcome.
    case leaseLost = "lease_lost"
    /// A human's yes is needed: an approval request was opened for the payload's hash.
    case approvalRequested = "approval_requested"
    /// A human approved or rejected (who, when, why, through which channel, for which hash).
    case approvalDecided = "approval_decided"
    /// A request was replaced (the payload or rating changed, the task was retried or cancelled).
    case approvalSuperseded = "approval_superseded"
    /// Nobody decided in time: the request and its task expired.
    case approvalExpired = "approval_expired"
    /// An alert reached the operator through a channel.
    case notified
    /// An alert could not be delivered; it is retried later.
    case notifyFailed = "notify_failed"
    /// Old finished tasks lost their bulky fields (the ledger keeps everything).
    case pruned
    /// A model call made for a task, with its cost.
    case llmCall = "llm_call"
    /// The day's budget is spent: a non-critical task waits for the next day.
    case deferred
    /// An approved proposal adjusted the worker at runtime (a pause, a raised timeout…).
    case overrideSet = "override_set"
    /// An override ended: removed by an operator, replaced, or undone by a proposal.
    case overrideRemoved = "override_removed"
    /// A fix proposal ran without a human: a `heal.auto_apply` entry covered it.
    case healApplied = "heal_applied"
    /// Heal did not apply a fix it is trusted with: a guardrail stopped it (the reason says which).
    case healSkipped = "heal_skipped"
    /// Heal looked at an automatic fix again after it settled: fixed, did not fix, failed.
    case healJudged = "heal_judged"
    /// Automatic fixes on a target stopped after fixes that did not fix, or started again.
    case healBreakerOpened = "heal_breaker_opened"
    case healBreakerClosed = "heal_breaker_closed"
    /// Too many types failing at once: nothing automatic runs until this ends.
    case healStopped = "heal_stopped"
    case healResumed = "heal_resumed"
    /// A remote producer got a bearer token for `autonomy serve` (its id and name, never the secret).
    case tokenIssued = "token_issued"
    case tokenRevoked = "token_revoked"
    /// An operator's web session: its login link made, opened, revoked.
    case sessionIssued = "session_issued"
    case sessionOpened = "session_opened"
    case sessionRevoked = "session_revoked"
}

/// One row of the append-only ledger.
public struct LedgerEntry: Sendable, Equatable {
    public var id: Int64
    public var at: Int64
    public var taskID: Int64?
    public var type: String?
    public var event: String
    public var attempt: Int?
    public var durationMs: Int64?
    public var costUSD: Double?
    public var detail: JSONValue?
}

extension LedgerEntry {
    /// The row as one line of canonical JSON (keys sorted by their bytes): `ledger export`'s
    /// format, byte-stable so an export can be compared or hashed. Keys as in `LedgerEntryOutput`.
    public var canonicalLine: String {
        JSONValue.object([
            "id": .int(id), "at": .string(Timestamp.format(at)), "task_id": taskID.map { .int($0) } ?? .null,
            "type": type.map { .string($0) } ?? .null, "event": .string(event),
            "attempt": attempt.map { .int(Int64($0)) } ?? .null, "duration_ms": durationMs.map { .int($0) } ?? .null,
            "cost_usd": costUSD.map { .double($0) } ?? .null, "detail": detail ?? .null,
        ]).canonicalText
    }
}

/// A ledger row as `--json` shows it.
public struct LedgerEntryOutput: Encodable, Sendable {
    public var id: Int64
    public var at: ISOTime
    @Nullable public var taskID: Int64?
    @Nullable public var type: String?
    public var event: String
    @Nullable public var attempt: Int?
    @Nullable public var durationMs: Int64?
    @Nullable public var costUSD: Double?
    @Nullable public var detail: JSONValue?

    enum CodingKeys: String, CodingKey {
        case id, at
        case taskID = "task_id"
        case type, event, attempt
        case durationMs = "duration_ms"
        case costUSD = "cost_usd"
        case detail
    }

    public init(_ entry: LedgerEntry) {
        (id, at, taskID, type, event) = (entry.id, ISOTime(entry.at), entry.taskID, entry.type, entry.event)
        (attempt, durationMs, costUSD, detail) = (entry.attempt, entry.durationMs, entry.costUSD, entry.detail)
    }
}

extension LedgerEntry: FetchableRecord {
    public init(row: Row) throws {
        id = try row.decode(forColumn: "id")
        at = try row.decode(forColumn: "at")
        taskID = try row.decode(forColumn: "task_id")
        type = try row.decode(forColumn: "type")
        event = try row.decode(forColumn: "event")
        attempt = try row.decode(forColumn: "attempt")
        durationMs = try row.decode(forColumn: "duration_ms")
        costUSD = try row.decode(forColumn: "cost_usd")
        detail = Self.detail(try row.decode(forColumn: "detail"), notes: try row.decode(forColumn: "notes"))
    }

    /// A row's detail as it is shown: its JSON (nil when unreadable), with the free text kept apart
    /// from the chain (`ledger_notes`, as one JSON object) back in its place until it is pruned.
    /// A note whose text does not hash to what its chained row says is not shown: whoever can
    /// write the database could have put it there.
    static func detail(_ detailText: String?, notes notesText: String?) -> JSONValue? {
        var detail = detailText.flatMap { try? JSONValue.parse($0) }
        if let notesText, case .object(let notes)? = try? JSONValue.parse(notesText),
            case .object(var fields)? = detail
        {
            for (field, text) in notes where fields[field] == nil {  // never over a chained field
                let holds =
                    text.stringValue.map {
                        LedgerChain.noteHolds($0, chained: fields[field + "_sha256"]?.stringValue)
                    } ?? false
                fields[field] = holds ? text : .string(LedgerChain.alteredNote)
            }
            detail = .object(fields)
        }
        return detail
    }

    /// The columns to read a ledger row with its notes.
    static let selection = """
        ledger.*, (SELECT json_group_object(field, text) FROM ledger_notes
                   WHERE ledger_id = ledger.id AND typeof(field) = 'text' AND typeof(text) = 'text') AS notes
        """
}

extension Database {
    /// Appends a ledger row. Called inside the transaction that makes the change it records, so the
    /// ledger can never disagree with the queue.
    ///
    /// `notes` are free text (a handler's error, a verifier's evidence): the chained row carries only
    /// each one's length and SHA-256 (`FIELD_bytes`, `FIELD_sha256`); the text goes to
    /// `ledger_notes`, shown with the row until `prune` removes it with its task.
    func appendLedger(
        _ event: LedgerEvent, at time: Int64, taskID: Int64?, type: String?, attempt: Int? = nil,
        durationMs: Int64? = nil, detail: JSONValue? = nil, notes: [String: String?] = [:]
    ) throws {
        let (detail, kept) = LedgerChain.fingerprinting(notes, into: detail)
        let id = try appendLedger(
            event, at: time, taskID: taskID, type: type, attempt: attempt, durationMs: durationMs,
            detailText: detail?.canonicalText)
        guard !kept.isEmpty else { return }
        for (field, text) in kept {
            try cachedStatement(sql: "INSERT INTO ledger_notes (ledger_id, field, task_id, text) VALUES (?, ?, ?, ?)")
                .execute(arguments: [id, field, taskID, text])
        }
    }

    /// The same, with the detail already written as canonical JSON text. Returns the new row's id.
    @discardableResult
    func appendLedger(
        _ event: LedgerEvent, at time: Int64, taskID: Int64?, type: String?, attempt: Int? = nil,
        durationMs: Int64? = nil, costUSD: Double? = nil, detailText: String?
    ) throws -> Int64 {
        // Inside the caller's IMMEDIATE transaction nobody else can append, so the last row is ours
        // to chain to.
        let (lastID, lastHash) = try lastLedgerRow()
        let id = lastID + 1
        let hash = LedgerChain.hash(
            previous: lastHash, id: id, at: time, taskID: taskID, type: type, event: event.rawValue, attempt: attempt,
            durationMs: durationMs, costUSD: costUSD, detail: detailText)
        let statement = try cachedStatement(
            sql: """
                INSERT INTO ledger (id, at, task_id, type, event, attempt, duration_ms, cost_usd, detail, prev_hash, hash)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """)
        try statement.run(binding: [
            .integer(id), .integer(time), .integer(taskID), .text(type), .text(event.rawValue),
            .integer(attempt.map(Int64.init)), .integer(durationMs), .real(costUSD), .text(detailText), .text(lastHash),
            .text(hash),
        ])
        // Only once the row is written: a failed insert leaves no tail pointing at it.
        LedgerTail.remember((id, hash), for: self)
        return id
    }

    /// The id and hash of the newest ledger row (0 and the genesis hash for an empty ledger).
    private func lastLedgerRow() throws -> (Int64, String) {
        if let tail = LedgerTail.remembered(for: self) { return tail }
        let statement = try cachedStatement(sql: "SELECT id, hash FROM ledger ORDER BY id DESC LIMIT 1")
        guard let row = try Row.fetchOne(statement) else { return (0, LedgerChain.genesis) }
        return (try row.decode(atIndex: 0), try row.decode(atIndex: 1))
    }
}

/// The newest ledger row of the write transaction under way: while it holds the write lock nobody
/// else can append, so a batch need not look the row up again for every task (`bench/`: about a
/// tenth of `enqueue --batch`). It is set only after a row is written, and `AutonomyStore.write`
/// forgets it when a transaction begins and when it ends, committed or rolled back.
enum LedgerTail {
    private static let tails = Mutex<[ObjectIdentifier: (Int64, String)]>([:])

    static func remembered(for db: Database) -> (Int64, String)? {
        tails.withLock { $0[ObjectIdentifier(db)] }
    }

    static func remember(_ tail: (Int64, String), for db: Database) {
        tails.withLock { $0[ObjectIdentifier(db)] = tail }
    }

    static func forget(_ db: Database) {
        _ = tails.withLock { $0.removeValue(forKey: ObjectIdentifier(db)) }
    }
}

/// The ledger's hash chain: each row's hash covers its content and the previous row's hash, so
/// editing or deleting a row (even with the append-only triggers dropped) shows at that row.
public enum LedgerChain {
    /// A row's notes (free text kept beside the chain, in `ledger_notes`) as the chained detail
    /// carries them: each one's length and SHA-256 (`FIELD_bytes`, `FIELD_sha256`). Returns the
    /// detail and the notes that have text, on both engines.
    static func fingerprinting(_ notes: [String: String?], into detail: JSONValue?) -> (
        detail: JSONValue?, kept: [String: String]
    ) {
        // A NUL would be cut by SQLite's text binding (and refused by PostgreSQL), so the text kept
        // would not be the text hashed: it is kept as U+FFFD, as a handler's stderr is.
        let kept = notes.compactMapValues { $0.map { $0.contains("\0") ? Captured.text(Array($0.utf8)) : $0 } }
        guard !kept.isEmpty else { return (detail, kept) }
        var fields = detail?.objectValue ?? [:]
        for (field, text) in kept {
            fields[field + "_bytes"] = .int(Int64(text.utf8.count))
            fields[field + "_sha256"] = .string(text.sha256Hex)
        }
        return (.object(fields), kept)
    }

    /// True when a note's text is the one its row's chained detail fingerprints (`FIELD_sha256`).
    static func noteHolds(_ text: String, chained sha256: String?) -> Bool { sha256 == text.sha256Hex }

    /// The note's text when it matches its row's `FIELD_sha256`, else nil (as if it had none).
    static func heldNote(_ text: String?, chained sha256: String?) -> String? {
        guard let text, noteHolds(text, chained: sha256) else { return nil }
        return text
    }

    /// Shown in place of a note that does not match its row (see `noteHolds`).
    static let alteredNote =
        "[not shown: this note does not match the hash its ledger row holds; it was changed outside autonomy]"

    /// Why a note is not the one its row was written with; nil when it is. `chained` is the row's
    /// `FIELD_sha256`, nil when the row has none (a note added to a row that had none) or is gone.
    static func brokenNote(field: String, text: String, chained: String?, rowExists: Bool) -> String? {
        guard rowExists else { return "a note (\(field)) names this row, which does not exist (it was added)" }
        guard let chained else { return "its \(field) note is not one the row was written with (it was added)" }
        return noteHolds(text, chained: chained)
            ? nil : "its \(field) note does not match the hash the row holds (it was edited)"
    }

    /// What the first row chains to.
    public static let genesis = String(repeating: "0", count: 64)

    /// SHA-256 over the previous row's hash (its 64 hex digits) and then each field of the row, in
    /// the order id, at, task_id, type, event, attempt, duration_ms, cost_usd, detail. Each field is
    /// one byte (0 null, 1 integer, 2 text, 3 real), then for an integer or a real its 8 bytes
    /// big-endian (a real's IEEE-754 bits), for a text its UTF-8 length in 8 bytes big-endian and
    /// its bytes. Unambiguous, and cheap enough to run on every append.
    static func hash(
        previous: String, id: Int64, at: Int64, taskID: Int64?, type: String?, event: String, attempt: Int?,
        durationMs: Int64?, costUSD: Double?, detail: String?
    ) -> String {
        var input = Input()
        input.start(previous: previous.utf8)
        input.integer(id)
        input.integer(at)
        input.integer(taskID)
        input.text(type)
        input.text(event)
        input.integer(attempt.map(Int64.init))
        input.integer(durationMs)
        input.real(costUSD)
        input.text(detail)
        return String(decoding: input.digestHex(), as: UTF8.self)
    }

    /// The bytes a row's hash is taken over, in the layout above. One buffer, reused: appending
    /// runs it for every row, and `ledger verify` for every row of the ledger.
    struct Input {
        private(set) var bytes: [UInt8] = []

        init() { bytes.reserveCapacity(512) }

        mutating func start(previous: some Collection<UInt8>) {
            bytes.removeAll(keepingCapacity: true)
            bytes.append(contentsOf: previous)
        }

        private mutating func eight(_ value: UInt64) {
            for shift in stride(from: 56, through: 0, by: -8) {
                bytes.append(UInt8(truncatingIfNeeded: value >> UInt64(shift)))
            }
        }

        mutating func integer(_ value: Int64?) {
            guard let value else { return bytes.append(0) }
            bytes.append(1)
            eight(UInt64(bitPattern: value))
        }

        mutating func text(_ value: String?) {
            guard let value else { return bytes.append(0) }
            text(utf8: value.utf8)
        }

        private mutating func text(utf8: String.UTF8View) {
            bytes.append(2)
            eight(UInt64(utf8.count))
            bytes.append(contentsOf: utf8)
        }

        /// A text column's bytes as SQLite holds them, or null.
        mutating func text(raw: UnsafeRawBufferPointer?) {
            guard let raw else { return bytes.append(0) }
            bytes.append(2)
            eight(UInt64(raw.count))
            bytes.append(contentsOf: raw)
        }

        mutating func real(_ value: Double?) {
            guard let value else { return bytes.append(0) }
            bytes.append(3)
            eight(value.bitPattern)
        }

        /// The SHA-256 of the bytes, as 64 lowercase hex digits (ASCII).
        func digestHex() -> [UInt8] {
            var hex = [UInt8](repeating: 0, count: 64)
            digestHex(into: &hex)
            return hex
        }

        /// The same, written over `hex` (64 bytes): `ledger verify` reuses one buffer for every row.
        func digestHex(into hex: inout [UInt8]) {
            if hex.count != 64 { hex = [UInt8](repeating: 0, count: 64) }
            var index = 0
            for byte in SHA256.hash(data: bytes) {
                hex[index] = hexDigit(byte >> 4)
                hex[index + 1] = hexDigit(byte & 0x0f)
                index += 2
            }
        }

    }
}

extension AutonomyStore {
    /// A task's ledger rows, oldest first.
    public func ledger(forTask taskID: Int64) throws -> [LedgerEntry] {
        try read("read the ledger") { db in
            try LedgerEntry.fetchAll(
                db, sql: "SELECT \(LedgerEntry.selection) FROM ledger WHERE task_id = ? ORDER BY id",
                arguments: [taskID])
        }
    }
}
