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
