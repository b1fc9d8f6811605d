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

/// The hot paths (every task of a drain, every row of `enqueue --batch`) run a few cached statements
/// through SQLite's C API instead of GRDB's rows and arguments: GRDB boxes every bound value as an
/// existential and builds a dictionary of column names for every row it reads, which together cost
/// more than SQLite's own work on those statements (`bench/`, callgrind).
extension Statement {
    /// Binds `values` to this cached statement and runs it: one step, which takes a statement that
    /// returns no rows (an `INSERT`, an `UPDATE`) to its end.
    func run(binding values: [BoundValue]) throws {
        _ = try first(binding: values) { _ in () }
    }

    /// Binds `values`, steps once, and reads the first row (nil when there is none) from its columns;
    /// then resets the statement. A statement that writes makes all its changes on that first step.
    /// (GRDB's `sql` trims the text on every read: it is read here only for an error.)
    func first<T>(binding values: [BoundValue], _ read: (StoredColumns) throws -> T) throws -> T? {
        let handle = sqliteStatement
        sqlite3_reset(handle)
        defer { sqlite3_reset(handle) }
        let expected = Int(sqlite3_bind_parameter_count(handle))
        guard expected == values.count else {
            // A caller's bug; SQLite would bind NULL to the missing ones without a word.
            throw DatabaseError(
                resultCode: .SQLITE_RANGE, message: "\(values.count) values for \(expected) parameters", sql: sql)
        }
        for (offset, value) in values.enumerated() {
            let index = Int32(offset + 1)
            let code: Int32
            switch value {
            case .text(let text?):
                // With its byte length, so a NUL inside the text is kept rather than ending it.
                var text = text
                code = text.withUTF8 { bytes in
                    bytes.withMemoryRebound(to: CChar.self) { chars in
                        sqlite3_bind_text(handle, index, chars.baseAddress ?? emptyText, Int32(chars.count), transient)
                    }
                }
            case .integer(let number?):
                code = sqlite3_bind_int64(handle, index, number)
            case .real(let number?):
                code = sqlite3_bind_double(handle, index, number)
            case .text(nil), .integer(nil), .real(nil):
                code = sqlite3_bind_null(handle, index)
            }
            // A text past SQLite's limit, or no memory: an error, never a NULL stored in its place.
            guard code == SQLITE_OK else { throw failure(code) }
        }
        switch sqlite3_step(handle) {
        case SQLITE_ROW:
            return try read(StoredColumns(handle: handle))
        case SQLITE_DONE:
            return nil
        case let code:
            throw failure(code)
        }
    }

    /// SQLite's error for `code`, read before the statement is reset.
    private func failure(_ code: Int32) -> DatabaseError {
        let message = sqlite3_errmsg(sqlite3_db_handle(sqliteStatement)).map { String(cString: $0) }
        return DatabaseError(resultCode: ResultCode(rawValue: code), message: message, sql: sql)
    }
}

/// The current row of a stepped statement, read by column index.
struct StoredColumns {
    let handle: SQLiteStatement

    /// Nil for NULL; a value stored as anything but an integer is an error, as GRDB reads it (SQLite
    /// would read a text as 0, and a task's `attempts` written as text would reset its retry budget).
    func optionalInteger(_ index: Int32) throws -> Int64? {
        switch sqlite3_column_type(handle, index) {
        case SQLITE_NULL: return nil
        case SQLITE_INTEGER: return sqlite3_column_int64(handle, index)
        default: throw unknown(index, "not an integer")
        }
    }

    /// Nil for NULL; a value stored as anything but a text is an error.
    func optionalText(_ index: Int32) throws -> String? {
        switch sqlite3_column_type(handle, index) {
        case SQLITE_NULL: return nil
        case SQLITE_TEXT: break
        default: throw unknown(index, "not a text")
        }
        guard let bytes = sqlite3_column_text(handle, index) else { return nil }
        return String(
            decoding: UnsafeBufferPointer(start: bytes, count: Int(sqlite3_column_bytes(handle, index))), as: UTF8.self)
    }

    func integer(_ index: Int32) throws -> Int64 {
        guard let value = try optionalInteger(index) else { throw missing(index) }
        return value
    }

    func text(_ index: Int32) throws -> String {
        guard let value = try optionalText(index) else { throw missing(index) }
        return value
    }

    func optionalInt(_ index: Int32) throws -> Int? { try optionalInteger(index).map { Int($0) } }

    func int(_ index: Int32) throws -> Int { Int(try integer(index)) }

    func name(_ index: Int32) -> String {
        sqlite3_column_name(handle, index).map { String(cString: $0) } ?? "#\(index)"
    }

    func missing(_ index: Int32) -> StoredValueError { StoredValueError(column: name(index), value: "NULL") }

    func unknown(_ index: Int32, _ value: String) -> StoredValueError {
        StoredValueError(column: name(index), value: value)
    }
}

/// A stored row holds a value this autonomy cannot read into its type (a state it does not know,
/// NULL where a value belongs): told by column, never with the row (it may hold a payload).
struct StoredValueError: Error, CustomStringConvertible {
    var column: String
    var value: String
    var description: String { "column \(column): \(value.prefix(40))" }
}
