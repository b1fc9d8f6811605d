import Foundation

/// Where the queue lives: an SQLite file (the default), or a PostgreSQL database named by a
/// `postgres://` URL (several machines, one queue).
public enum DatabaseLocation: Sendable, Equatable {
    case sqlite(path: String)
    case postgres(PostgresURL)

    /// A `postgres://` or `postgresql://` URL is PostgreSQL; anything else is an SQLite file path.
    public static func isPostgresURL(_ text: String) -> Bool {
        let lowered = text.lowercased()
        return lowered.hasPrefix("postgres://") || lowered.hasPrefix("postgresql://")
    }
}

/// A PostgreSQL connection URL without its password: `postgres://USER@HOST:PORT/DATABASE?sslmode=…`.
///
/// The password never comes from the URL (a URL is printed, logged, kept in the configuration
/// and seen in `ps`): it comes from `PGPASSWORD`, a password file (`PGPASSFILE`, else
/// `~/.pgpass`), or the variable `store.password_env` names. A URL that carries one is refused.
public struct PostgresURL: Sendable, Equatable, CustomStringConvertible {
    public var user: String
    public var host: String
    public var port: Int
    public var database: String
    public var tls: TLSMode

    /// libpq's `sslmode`, as far as autonomy follows it. `require` and `verify-full` both insist on
    /// TLS with a certificate the system trusts for this host name (stricter than libpq's
    /// `require`, which checks nothing); `disable` sends everything in the clear. There is no
    /// `prefer`: whoever answers "no TLS" would be sent the password in the clear.
    public enum TLSMode: String, Sendable {
        case disable, require
        case verifyFull = "verify-full"
    }

    /// The mode a URL without `sslmode` gets: in the clear on loopback, else verified TLS.
    public static func defaultTLS(host: String) -> TLSMode {
        ["localhost", "127.0.0.1", "::1"].contains(host.lowercased()) ? .disable : .verifyFull
    }

    /// The URL as it may be shown anywhere: it never holds a password.
    public var description: String {
        let shownHost = host.contains(":") ? "[\(host)]" : host
        let mode = tls == Self.defaultTLS(host: host) ? "" : "?sslmode=\(tls.rawValue)"
        return "postgres://\(user)@\(shownHost):\(port)/\(database)\(mode)"
    }

    public init(user: String, host: String, port: Int = 5432, database: String, tls: TLSMode? = nil) {
        (self.user, self.host, self.port, self.database) = (user, host, port, database)
        self.tls = tls ?? Self.defaultTLS(host: host)
    }

    /// Parses a URL. The error says what is wrong without repeating the URL (it might hold a password).
    public init(parsing text: String, environment: [String: String] = ProcessEnvironment.variables)
        throws(ConfigError)
    {
        guard DatabaseLocation.isPostgresURL(text), let components = URLComponents(string: text) else {
            throw .invalidDatabaseURL("expected postgres://USER@HOST[:PORT]/DATABASE")
        }
        if components.password != nil {
            throw .invalidDatabaseURL(
                "the URL carries a password: remove it, and set PGPASSWORD, a ~/.pgpass line, or store.password_env")
        }
        guard let host = components.host, !host.isEmpty else {
            throw .invalidDatabaseURL("the URL names no host (postgres://USER@HOST/DATABASE)")
        }
        let user = components.user ?? environment["PGUSER"] ?? ""
        guard !user.isEmpty else {
            throw .invalidDatabaseURL("the URL names no user (postgres://USER@HOST/DATABASE), and PGUSER is not set")
        }
        let path = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
        guard !path.isEmpty, !path.contains("/") else {
            throw .invalidDatabaseURL("the URL names no database (postgres://USER@HOST/DATABASE)")
        }
        var tls: TLSMode?
        for item in components.queryItems ?? [] {
            switch item.name {
            case "sslmode":
                if item.value == "prefer" || item.value == "allow" {
                    throw .invalidDatabaseURL(
                        "sslmode=\(item.value ?? "") would send the password in the clear to whoever answers \"no TLS\": use verify-full (or disable on loopback)"
                    )
                }
                guard let value = item.value, let mode = TLSMode(rawValue: value) else {
                    throw .invalidDatabaseURL("sslmode must be disable, require or verify-full")
                }
                tls = mode
            default:
                throw .invalidDatabaseURL("unknown URL parameter \"\(item.name)\" (only sslmode is understood)")
            }
        }
        let port = components.port ?? 5432
        guard (1...65535).contains(port) else { throw .invalidDatabaseURL("the port must be from 1 to 65535") }
        self.init(user: user, host: host, port: port, database: path.removingPercentEncoding ?? path, tls: tls)
    }

    /// The password for this URL: the variable the configuration names (`store.password_env`),
    /// else `PGPASSWORD`, else the first matching line of the password file. Nil when none has one
    /// (the server may not ask: peer or trust authentication).
    /// The configuration key whose variable holds the password: a refusal about it is the
    /// caller's missing password (a producer's, which the gate stands in for).
    public static let passwordVariableKey = "store.password_env"

    public func password(
        variable: String? = nil, environment: [String: String] = ProcessEnvironment.variables
    ) throws(ConfigError) -> String? {
        if let variable {
            guard let value = environment[variable], !value.isEmpty else {
                throw ConfigError(
                    path: Self.passwordVariableKey, message: "names \(variable), which is not set in the environment")
            }
            return value
        }
        if let value = environment["PGPASSWORD"], !value.isEmpty { return value }
        let file =
            environment["PGPASSFILE"]
            ?? (environment["HOME"] ?? NSHomeDirectory()).appending("/.pgpass")
        return try PasswordFile.lookup(in: file, for: self)
    }
}

/// libpq's password file: `hostname:port:database:username:password` per line, `*` matches
/// anything, `\:` and `\\` escape. As libpq does, a file others can read is not used.
enum PasswordFile {
    static func lookup(in path: String, for url: PostgresURL) throws(ConfigError) -> String? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        guard info.st_mode & 0o077 == 0 else {
            throw .invalidDatabaseURL(
                "the password file \(path) may be read by others: chmod 600 it (libpq ignores it too)")
        }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) where !line.hasPrefix("#") {
            let fields = split(line)
            guard fields.count == 5 else { continue }
            let wanted = [url.host, String(url.port), url.database, url.user]
            if zip(fields.prefix(4), wanted).allSatisfy({ $0 == "*" || $0 == $1 }) { return fields[4] }
        }
        return nil
    }

    /// Splits a line at unescaped colons, undoing `\:` and `\\`.
    static func split(_ line: Substring) -> [String] {
        var fields: [String] = []
        var current = ""
        var escaped = false
        for character in line {
            if escaped {
                current.append(character)
                escaped = false
            } else if character == "\\" {
                escaped = true
            } else if character == ":" {
                fields.append(current)
                current = ""
            } else {
                current.append(character)
            }
        }
        fields.append(current)
        return fields
    }
}
