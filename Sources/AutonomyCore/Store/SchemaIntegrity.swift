import GRDB

/// The triggers of an SQLite database are code that runs inside the worker's own transactions:
/// someone who can write the file could add one that changes a task between the firewall's check
/// and its claim, or drop the one that keeps a payload immutable. The commands that run handlers
/// refuse a database whose triggers are not exactly the ones autonomy's migrations made.
public struct ForeignTriggers: Error, Sendable, CustomStringConvertible {
    public var path: String
    /// Triggers autonomy did not make, or whose text is not the one it made.
    public var foreign: [String]
    /// autonomy's own triggers that are gone.
    public var missing: [String]

    public var description: String {
        var found: [String] = []
        if !foreign.isEmpty { found.append("triggers autonomy did not make: \(foreign.joined(separator: ", "))") }
        if !missing.isEmpty { found.append("its own triggers are gone: \(missing.joined(separator: ", "))") }
        return
            "the database \(path) has been changed by another program (\(found.joined(separator: "; "))), so no handler runs on it; see what changed with `sqlite3 \(path) \".schema\"`, and restore it from a backup"
    }
}

extension AutonomyStore {
    /// The SHA-256 of each trigger's text as the migrations leave it in `sqlite_master`. A new
    /// migration that adds, drops or rewrites a trigger updates this list (SchemaIntegrityTests
    /// fails until it does).
    static let ownTriggers: [String: String] = [
        "ledger_no_delete": "38cc398764cf9c1fb3a9351050a777f96528c25d12c94c32935dff0ad36dc9dd",
        "ledger_no_update": "5d0ac85a66f9fbbacaaffeea94985258c36cff93d7286e17ae39f96327ead540",
        "tasks_immutable": "7608b648d66cada1f1e471f9d7f7966cc7a5fd3a96ea28c52d7952ea1731f235",
    ]

    /// Compares the database's triggers with autonomy's own.
    ///
    /// - Returns: nil when they are the same; what differs otherwise.
    public func foreignTriggers() throws -> ForeignTriggers? {
        try read("read the schema") { db in try Self.foreignTriggers(db, path: path) }
    }

    /// The same, on a connection of the caller's (doctor's, read-only).
    static func foreignTriggers(_ db: Database, path: String) throws -> ForeignTriggers? {
        let found = try Row.fetchAll(db, sql: "SELECT name, sql FROM sqlite_master WHERE type = 'trigger'").map {
            (name: $0[0] as String, sql: ($0[1] as String?) ?? "")
        }
        let foreign = found.filter { Self.ownTriggers[$0.name] != $0.sql.sha256Hex }.map(\.name).sorted()
        let present = Set(found.map(\.name))
        let missing = Self.ownTriggers.keys.filter { !present.contains($0) }.sorted()
        guard !foreign.isEmpty || !missing.isEmpty else { return nil }
        return ForeignTriggers(path: path, foreign: foreign, missing: missing)
    }

    /// Throws when the database's triggers are not autonomy's own (`foreignTriggers()`).
    public func requireOwnTriggers() throws {
        if let found = try foreignTriggers() { throw found }
    }
}
