import GRDB
import GRDBSQLite

/// A value bound straight through SQLite's C API.
enum BoundValue {
    case text(String?)
    case integer(Int64?)
    case real(Double?)
}

private let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
/// An empty text needs a real pointer: a null one would bind NULL instead of "".
nonisolated(unsafe) private let emptyText: UnsafePointer<CChar> = {
    let pointer = UnsafeMutablePointer<CChar>.allocate(capacity: 1)
    pointer.initialize(to: 0)
    return UnsafePointer(pointer)
}()

extension Statement {
    /// Binds `values` to this cached statement and runs it to completion.
    ///
    /// GRDB's `StatementArguments` box every value as an existential; on the `enqueue --batch`
    /// path (two inserts per task, 100,000 tasks) that boxing costs more than SQLite itself.
    func run(binding values: [BoundValue]) throws {
        let handle = sqliteStatement
        sqlite3_reset(handle)
        for (offset, value) in values.enumerated() {
            let index = Int32(offset + 1)
            switch value {
            case .text(let text?):
                // With its byte length, so a NUL inside the text is kept rather than ending it.
                var text = text
                text.withUTF8 { bytes in
                    bytes.withMemoryRebound(to: CChar.self) { chars in
                        _ = sqlite3_bind_text(
                            handle, index, chars.baseAddress ?? emptyText, Int32(chars.count), transient)
                    }
                }
            case .integer(let number?):
                sqlite3_bind_int64(handle, index, number)
            case .real(let number?):
                sqlite3_bind_double(handle, index, number)
            case .text(nil), .integer(nil), .real(nil):
                sqlite3_bind_null(handle, index)
            }
        }
        let code = sqlite3_step(handle)
        sqlite3_reset(handle)
        guard code == SQLITE_DONE || code == SQLITE_ROW else {
            let message = sqlite3_errmsg(sqlite3_db_handle(handle)).map { String(cString: $0) }
            throw DatabaseError(resultCode: ResultCode(rawValue: code), message: message, sql: sql)
        }
    }
}

/// A row read straight from SQLite's C API.
struct RawRow {
    let handle: OpaquePointer

    func integer(_ column: Int32) -> Int64 { sqlite3_column_int64(handle, column) }

    func text(_ column: Int32) -> String {
        guard let bytes = sqlite3_column_text(handle, column) else { return "" }
        return String(cString: bytes)
    }
}

extension Statement {
    /// Runs this cached query and hands its first row (or nil) to `body`, without GRDB's row
    /// decoding: for lookups on every ledger append.
    func withFirstRow<T>(_ body: (RawRow?) throws -> T) throws -> T {
        let handle = sqliteStatement
        sqlite3_reset(handle)
        defer { sqlite3_reset(handle) }
        let code = sqlite3_step(handle)
        switch code {
        case SQLITE_ROW: return try body(RawRow(handle: handle))
        case SQLITE_DONE: return try body(nil)
        default:
            let message = sqlite3_errmsg(sqlite3_db_handle(handle)).map { String(cString: $0) }
            throw DatabaseError(resultCode: ResultCode(rawValue: code), message: message, sql: sql)
        }
    }
}
