import Crypto
import GRDB
import GRDBSQLite
import Synchronization

/// A database's schema is code too: a trigger runs inside the worker's own transactions, and a
/// table's definition (a generated column) decides what a read returns. Someone who can write the
/// file could add a trigger that swaps a task's payload between the firewall's check and its claim,
/// or drop the one that keeps payloads immutable. The commands that run handlers refuse a database
/// whose schema is not exactly the one autonomy's migrations made: every table, index and trigger,
/// by type, name and text.
public struct ForeignSchema: Error, Sendable, CustomStringConvertible {
    public var path: String
    /// Schema entries autonomy did not make, or whose text is not the one it made ("trigger swap").
    public var foreign: [String]
    /// autonomy's own entries that are gone.
    public var missing: [String]

    public var description: String {
        var found: [String] = []
        if !foreign.isEmpty { found.append("not made by autonomy: \(foreign.joined(separator: ", "))") }
        if !missing.isEmpty { found.append("gone: \(missing.joined(separator: ", "))") }
        return
            "the schema of the database \(path) was changed by another program (\(found.joined(separator: "; "))), so no handler runs on it; see what changed with `sqlite3 \(path) .schema`, and restore it from a backup"
    }
}

extension AutonomyStore {
    /// The SHA-256 of the whole schema as `schemaDigest` reads it. A new migration changes it (and
    /// `ownSchema`): SchemaIntegrityTests fails until both are updated, and prints them.
    static let ownSchemaDigest = "dff9eed69846c0aae0cead4555529ff2a1a6d1b5a9ccd9d42a7290a9e7ae79f7"

    /// Every row of `sqlite_master` that holds SQL (SQLite builds a table, an index or a trigger
    /// from any such row, whatever its type and name columns say), but the statistics tables an
    /// `ANALYZE` makes, exactly as SQLite makes them. Rows without SQL (automatic indexes) run nothing.
    static let schemaRows = """
        SELECT type, name, tbl_name, sql
        FROM (SELECT CAST(ifnull(type, '') AS TEXT) AS type, CAST(ifnull(name, '') AS TEXT) AS name,
          CAST(ifnull(tbl_name, '') AS TEXT) AS tbl_name, CAST(sql AS TEXT) AS sql FROM sqlite_master)
        WHERE sql IS NOT NULL AND NOT (type = 'table' AND (
          (name = 'sqlite_stat1' AND sql = 'CREATE TABLE sqlite_stat1(tbl,idx,stat)')
          OR (name = 'sqlite_stat4' AND sql = 'CREATE TABLE sqlite_stat4(tbl,idx,neq,nlt,ndlt,sample)')))
        """

    /// The SHA-256 of every `sqlite_master` row that holds SQL, in the table's order: each of its
    /// type, name, table name and SQL as an 8-byte little-endian length and the bytes (so no two
    /// sets of rows read the same). Read through SQLite's C API and hashed as it streams: this is the
    /// whole check while nothing changed, at every `work-once`. Anything else (another order, the
    /// statistics of an `ANALYZE`) is sorted out by the comparison row by row.
    static func schemaDigest(_ db: Database) throws -> String {
        let statement = try db.makeStatement(
            sql: "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE sql IS NOT NULL")
        let handle = statement.sqliteStatement
        // One buffer, hashed once: an update per column cost more than the hash itself.
        var bytes: [UInt8] = []
        bytes.reserveCapacity(16_384)
        var code = sqlite3_step(handle)
        while code == SQLITE_ROW {
            for column in Int32(0)..<4 {
                let text = sqlite3_column_text(handle, column)
                let count = Int(sqlite3_column_bytes(handle, column))
                withUnsafeBytes(of: UInt64(count).littleEndian) { bytes.append(contentsOf: $0) }
                if let text, count > 0 { bytes.append(contentsOf: UnsafeBufferPointer(start: text, count: count)) }
            }
            code = sqlite3_step(handle)
        }
        guard code == SQLITE_DONE else {
            throw DatabaseError(
                resultCode: ResultCode(rawValue: code), message: String(cString: sqlite3_errmsg(db.sqliteConnection)))
        }
        return SHA256.hash(data: bytes).hexString
    }

    /// For each of those rows the migrations make ("type name"), the SHA-256 of its table name, a
    /// line feed and its SQL text: what names the entries that differ once the digest does.
    static let ownSchema: [String: String] = [
        "index approval_tokens_approval": "5fc14267a2ab338a1297121e5aa3d53e9fe3a9e737a3c941a383d1fcfc7ecc32",
        "index approvals_pending": "46c76d13407170193c46ae326d03dd8465a47b1a34e481c44bc248c510e388ce",
        "index approvals_requested": "dc8e08850ff48a429ba7d94cbae4d76dc8ede7365db5c595e2bf29b7a9623dec",
        "index approvals_task": "e304f6b9b9849b50f1c3b7d4259ba267660460d1a83e7749d2fc92bda57be6c1",
        "index findings_kind": "6ba92a9fb5ac75d2d3f74d70b595da678ccfe500eebcdeed49a678b3a8966986",
        "index findings_run": "89468ac2f755f1e5d1aa15278249ba7cdc862373e45ebbb4729001a1131bc9b0",
        "index heal_actions_key": "2d10b4b10040d34e4516df9b674e5f740a8bbe88cbf95894aaa6b0e29dbc5d19",
        "index heal_actions_recent": "a462c9217a0a12e7a4ac36e2521bf017780cde9a113412ee91ffabc1ab801079",
        "index heal_actions_target": "44a7fd77b9498a93dd6959438aafc08eca527257bde8ae378694e014f2dfe562",
        "index heal_breakers_target": "c5574d2aacbc8daa03e95256b98af3ac2a10bbe6b04752697a4947ee645365e6",
        "index ledger_notes_task": "99caaf931f23b7c662b84e76023a22bf2af6fba281ba1a4c83a49a77c256ebe4",
        "index ledger_task": "dbb8c1783237be87f00cd062171f11d482b8009a94039e3dac80b7fa0cb29d77",
        "index ledger_type_event": "c40f4ba769345bb301a10f9c2abce9303e8e07cf9336d9b906595208f304f0b5",
        "index llm_calls_open": "47a7fb6c5ba672e197e696fdfb3667313e86e8e7e5bc22623f052257c14d9642",
        "index llm_calls_started": "59b6222d00dc83cf5a625fce9a38f141573682a9d658dcc9c979bf8ac044b579",
        "index llm_calls_task": "cce280dcbe78112d10c6b6033e68bc81d9e1396d032cbf09aebb9650815d54a3",
        "index notifications_due": "e67545826dc835aa2ac9c844fb49d0dd1b2b76ad6e093fa67a42ba0ad49a79cc",
        "index overrides_active": "0882f0b41905e96065fec0ac9f0b2174e99a25183f04a19ac74ab6f675516f55",
        "index proposals_key": "2281882636819139023f393ff37f123027f5daec5db35a8c097216d49e446394",
        "index proposals_run": "0988126e931f1784e1150b744bb6857092fa52c946294a9b9dc42f1da46261a5",
        "index tasks_claim_order": "5b49bd2cecfc5e661d47b51e48f839939df9ccb74628d629cf63f0014b6b91a0",
        "index tasks_key": "947dd78a4ad60734657f9a6b06da4e2472909f330228fc5799ef5b88735212b3",
        "index tasks_leases": "9602461be986f066f8d73987f0c210af2f890d1020a610dfde524839c363ec47",
        "index tasks_source": "b6b43c23af827eb6a2144fdfc51503fbf6099c29b62ed7148acb7d3dc9d56acb",
        "index tasks_source_state": "b8c421a74a0720e67fd468af9c0fc8996ce3c5781859a7c498cb305c3659a7ed",
        "index tasks_subject": "5aa53deac0e010e798993525fd597b5dd3e7439648afd9ba118880ca1c9e3df6",
        "table approval_tokens": "d74bf6e8ab3b748d26a73a0a26a22c5cf6612c3e18940affa69f5af7f40b82da",
        "table approvals": "afe358dca577973d72350014403a845383e64ad390efb246c604b863017ba6f6",
        "table audit_runs": "063b59a87be307cd73f001a7a7f5c8ab82a1e59be7889364fef7797fbfceac6d",
        "table findings": "1bc7197bb36b7734e952720c31b142d1acc8dca23d8053b24781e980e8a4f7f7",
        "table grdb_migrations": "bd4b2a6649aa2077fb2624d7e1b651296d10243fea4ba5c4b573696af8bfdb17",
        "table heal_actions": "331b81d767b98e0c23c4b01d5ea448694b4842f3f39671b895602dd75ad9805a",
        "table heal_breakers": "3ce83f7e8e067603b5f304f36844756bf10e525a526bb2cf8ae328d56f5f7413",
        "table heal_stops": "858f8be2db156fba91919d257eae752305cab0a74e4e4e2a5d8e62600415a12c",
        "table ledger": "8187f3ea4240dc035d51a8f8b154d9c480f5dc37c6547fec8d806c61ade4b15d",
        "table ledger_notes": "7adeda97255787295cd23a46418785dab0f640d20266e75a9da2de45ef2eecb7",
        "table llm_calls": "b499df61c6d610ad08e3aa2179aee5dd36200ec4d128abc4961ea38689019209",
        "table notifications": "106e388e83264155e4badb43c757fb63e59712961240c3e84b3dbe821aed3de5",
        "table operator_sessions": "2055f52e82b9b5548ebe858ec5e964a760fc14c55d93a1ea3b1ed6ffa86dc559",
        "table overrides": "49674396ffacf6c1729032536e08dfa501374ba27a2553b8a423e219db41a314",
        "table producer_tokens": "dec3845dac1a7c3a4fa526e4a594c5b20199a263356b8c2f9a1a0400df740aad",
        "table proposals": "fa5beffa271187d11b98482104e24a3dfd6bedf90e4daea5cf4d93b3ca64bb6f",
        "table tasks": "2fa18d84edeeb4a5757d2022e8cca0b3917542227683318fa04b8cb2536a5248",
        "trigger ledger_no_delete": "ba5d3d255572d0cc6159a37dbe36b58c763dc4c5ff9b8a2f2339651347542c64",
        "trigger ledger_no_update": "e185e71f5cfa68faaf89dd633d591a5bc434fa5ce6532159917ea4621272df6a",
        "trigger tasks_immutable": "cfb214f183be181b324e945235d7969d91a35f792eef6dff58fe05d84aa9036a",
    ]

    /// Compares the database's schema with autonomy's own.
    ///
    /// - Returns: nil when they are the same; what differs otherwise.
    public func foreignSchema() throws -> ForeignSchema? {
        try read("read the schema") { db in try Self.foreignSchema(db, path: path) }
    }

    /// The same, on a connection of the caller's (doctor's, read-only).
    static func foreignSchema(_ db: Database, path: String) throws -> ForeignSchema? {
        if try schemaDigest(db) == ownSchemaDigest { return nil }
        // The type and name are taken as written: a row typed "TRIGGER", or named like SQLite's own
        // tables, is as foreign as any.
        var present = Set<String>()
        var foreign: [String] = []
        for row in try Row.fetchAll(db, sql: "SELECT type, name, tbl_name, sql FROM (\(schemaRows))") {
            let key = "\(row[0] as String) \(row[1] as String)"
            present.insert(key)
            if ownSchema[key] != "\(row[2] as String)\n\(row[3] as String)".sha256Hex { foreign.append(key) }
        }
        let missing = ownSchema.keys.filter { !present.contains($0) }
        guard !foreign.isEmpty || !missing.isEmpty else { return nil }
        return ForeignSchema(path: path, foreign: foreign.sorted(), missing: missing.sorted())
    }

    /// Throws when the database's schema is not autonomy's own (`foreignSchema()`); afterwards each
    /// claim looks again whenever the schema changed (a trigger added while a drain runs).
    ///
    /// The rows checked and the schema this connection runs with come from one snapshot: the
    /// connection loaded its schema when it opened, and a writer can change `sqlite_master` without
    /// changing the schema's version (`PRAGMA writable_schema`), which a loaded connection never
    /// notices. So the check opens a read transaction, drops the loaded schema (`writable_schema =
    /// RESET`: it is read again from that transaction's snapshot), and reads the rows there. From
    /// then on the connection reads its schema again only when the version changes, and every write
    /// transaction then checks it again first (`recheckSchema`).
    public func requireOwnSchema() throws {
        do {
            try isolated("BEGIN DEFERRED", ending: .commit) { db in
                _ = try Row.fetchOne(db.makeStatement(sql: "SELECT 1 FROM sqlite_master LIMIT 1"))  // the snapshot
                try db.makeStatement(sql: "PRAGMA writable_schema = RESET").execute()
                if let found = try Self.foreignSchema(db, path: path) { throw found }
                schemaGuard.verified = try Int64.fetchOne(db.makeStatement(sql: "PRAGMA schema_version"))
            }
        } catch {
            throw StoreError.wrap(error, path: path, operation: "check the schema")
        }
    }

    /// At the start of a write transaction: the schema checked again if its version changed since it
    /// was last found autonomy's own (the connection then reads it again, from this transaction's
    /// snapshot). Nothing is read but the version while it stays the same.
    func recheckSchema(_ db: Database) throws {
        guard let verified = schemaGuard.verified else { return }
        // From the statement cache, through SQLite's C API: this runs once per task of a drain.
        let version =
            try db.cachedStatement(sql: "PRAGMA schema_version").first(binding: []) {
                try $0.optionalInteger(0)
            } ?? nil
        guard version != verified else { return }
        if let found = try Self.foreignSchema(db, path: path) { throw found }
        schemaGuard.verified = version
    }
}

/// The schema version last found to be autonomy's own schema; nil until a command asks for the check.
final class SchemaGuard: Sendable {
    private let version = Mutex<Int64?>(nil)
    var verified: Int64? {
        get { version.withLock { $0 } }
        set { version.withLock { $0 = newValue } }
    }
}
