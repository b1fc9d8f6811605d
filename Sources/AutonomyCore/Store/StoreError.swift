import GRDB

/// The database could not be used. Each case says what the operator can do about it.
public enum StoreError: Error, Sendable, CustomStringConvertible {
    /// The file could not be created or opened.
    case cannotOpen(path: String, reason: String)
    /// The database server did not accept this user: no password, or a wrong one (SQLSTATE 28…).
    case refused(path: String, reason: String)
    /// A command that only reads found no database file.
    case missing(path: String)
    /// The file was written by a newer autonomy.
    case newerSchema(path: String, unknownMigrations: [String])
    /// Another process held the database for longer than the busy timeout.
    case busy(path: String)
    /// Anything else SQLite reported, with the operation that failed.
    case failed(path: String, operation: String, reason: String)
    /// A command or feature that runs only on an SQLite store so far.
    case notOnPostgres(String)

    public var description: String {
        switch self {
        case .cannotOpen(let path, let reason), .refused(let path, let reason):
            return "cannot open the database \(path): \(reason)"
        case .missing(let path):
            return "no database at \(path) yet (nothing was enqueued there; check --database or AUTONOMY_DATABASE)"
        case .newerSchema(let path, let unknown):
            return
                "the database \(path) was written by a newer autonomy (it has migrations this binary does not know: \(unknown.joined(separator: ", "))); upgrade autonomy"
        case .busy(let path) where path.hasPrefix("postgres"):
            return
                "the database \(path) stayed locked by another host's transaction past the wait (5 minutes; serve.request_timeout for serve), or kept conflicting with others; try again"
        case .busy(let path):
            return
                "the database \(path) stayed locked by another process past the busy timeout; try again, or raise store.busy_timeout"
        case .failed(let path, let operation, let reason):
            return "database \(path): \(operation) failed: \(reason)"
        case .notOnPostgres(let feature):
            return
                "\(feature) does not run on a PostgreSQL database yet (use an SQLite database for it)"
        }
    }

    static func wrap(_ error: any Error, path: String, operation: String) -> any Error {
        if let decoding = error as? RowDecodingError {
            // Named, without the row (it may hold a payload) or the SQL.
            let text = "\(decoding)"
            let named = text.range(of: ", row: ").map { String(text[..<$0.lowerBound]) } ?? text
            return StoreError.failed(
                path: path, operation: operation,
                reason:
                    "a row holds a value this autonomy does not know (\(named.prefix(300))); was it written by another program?"
            )
        }
        if let stored = error as? StoredValueError {
            return StoreError.failed(
                path: path, operation: operation,
                reason:
                    "a row holds a value this autonomy does not know (\(stored)); was it written by another program?")
        }
        guard let databaseError = error as? DatabaseError else { return error }
        switch databaseError.resultCode {
        case .SQLITE_BUSY, .SQLITE_LOCKED:
            return StoreError.busy(path: path)
        case .SQLITE_NOTADB, .SQLITE_CORRUPT:
            return StoreError.cannotOpen(path: path, reason: "the file is not an autonomy database or is damaged")
        case .SQLITE_READONLY, .SQLITE_PERM, .SQLITE_CANTOPEN:
            return StoreError.cannotOpen(
                path: path,
                reason:
                    "\(databaseError.message ?? "permission denied") (check the file's owner and mode, and its folder's)"
            )
        case .SQLITE_FULL, .SQLITE_IOERR:
            return StoreError.failed(
                path: path, operation: operation, reason: "\(databaseError.message ?? "disk error") (is the disk full?)"
            )
        default:
            return StoreError.failed(
                path: path, operation: operation, reason: databaseError.message ?? "\(databaseError.resultCode)")
        }
    }
}
