import Foundation
import Logging

/// stderr as systemd's journal reads it. When stderr is the journal stream systemd named in
/// `JOURNAL_STREAM`, every line starts with its syslog priority (`<3>` error … `<7>` debug), which
/// journald strips and keeps, so `journalctl -p warning -u autonomy-worker` shows exactly the
/// warnings and errors. Anywhere else (a terminal, a pipe, a file) lines stay plain.
public enum Journal {
    /// Whether this process's stderr is the journal stream: `JOURNAL_STREAM` ("DEVICE:INODE") names
    /// the stream systemd connected, and is believed only while fd 2 is still that stream (a
    /// handler's stderr redirected to a file inherits the variable, not the stream).
    public static func isStandardError(environment: [String: String] = ProcessEnvironment.variables)
        -> Bool
    {
        guard let value = environment["JOURNAL_STREAM"] else { return false }
        let parts = value.split(separator: ":")
        guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]) else { return false }
        var info = stat()
        guard fstat(2, &info) == 0 else { return false }
        return UInt64(info.st_dev) == device && UInt64(info.st_ino) == inode
    }

    /// Writes a line to the journal with structured fields (the native protocol), so the journal
    /// keeps the ledger's head where the database's writers cannot edit it.
    /// Sends when the process's stderr is the journal (`JOURNAL_STREAM`); false otherwise, and the
    /// caller prints the line instead.
    public static func send(
        _ message: String, messageID: String, fields: [String: String],
        environment: [String: String] = ProcessEnvironment.variables
    ) -> Bool {
        guard environment["JOURNAL_STREAM"] != nil else { return false }
        let socketPath = "/run/systemd/journal/socket"
        let descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        var datagram = "MESSAGE=\(message)\nMESSAGE_ID=\(messageID)\nPRIORITY=6\nSYSLOG_IDENTIFIER=autonomy\n"
        for (name, value) in fields.sorted(by: { $0.key < $1.key }) { datagram += "\(name)=\(value)\n" }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in socketPath.utf8.enumerated() { raw[index] = byte }
        }
        let bytes = Array(datagram.utf8)
        let sent = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                sendto(descriptor, bytes, bytes.count, 0, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        return sent == bytes.count
    }

    /// Worked out once per process.
    public static let isActive = isStandardError()

    /// The sd-daemon priority of a level: syslog's numbers.
    public static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: return 7
        case .info: return 6
        case .notice: return 5
        case .warning: return 4
        case .error: return 3
        case .critical: return 2
        }
    }

    /// The priority an `error:` or `warning:` line on stderr has; anything else is a notice.
    public static func priority(ofLine line: some StringProtocol) -> Int {
        if line.hasPrefix("error:") { return 3 }
        if line.hasPrefix("warning:") { return 4 }
        return 5
    }

    /// Writes `text` to stderr, each line prefixed with `priority` when stderr is the journal.
    public static func write(_ text: String, priority: Int? = nil, journal: Bool = isActive) {
        FileHandle.standardError.write(Data(utf8: format(text, priority: priority, journal: journal)))
    }

    /// `text` as `write` sends it: one `<N>` per line under the journal (a line's own priority
    /// when none is given), unchanged elsewhere; always ending in a newline.
    public static func format(_ text: String, priority: Int? = nil, journal: Bool) -> String {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        // journald also ends a line at NUL (and a terminal acts on escapes): within a line, control
        // characters are shown, never sent, so no text can start a line or a priority of its own.
        let kept = (lines.last?.isEmpty == true ? lines.dropLast() : lines[...]).map {
            AutonomyLogHandler.escaped(String($0), quoting: false)
        }
        guard journal else { return kept.joinedPlainly(separator: "\n") + "\n" }
        return kept.map { "<\(priority ?? Self.priority(ofLine: $0))>\($0)" }.joinedPlainly(separator: "\n") + "\n"
    }
}

/// autonomy's log lines: one event a line on stderr, `message key=value …`, with `task` and `type`
/// first so that `grep 'task=42 '` finds a task's lines. Under the journal each line carries its
/// priority (see `Journal`) and no time (the journal adds its own); elsewhere it starts with the
/// time in UTC and the level. Newlines and control characters in a message or a value are escaped,
/// so nothing a handler wrote can forge a line, or a priority, of its own.
public struct AutonomyLogHandler: LogHandler {
    public var logLevel: Logger.Level = .warning
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    private let label: String
    private let journal: Bool
    private let write: @Sendable (String) -> Void

    public init(
        label: String, journal: Bool = Journal.isActive,
        write: @escaping @Sendable (String) -> Void = { FileHandle.standardError.write(Data(utf8: $0)) }
    ) {
        self.label = label
        self.journal = journal
        self.write = write
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var all = metadata
        if let provided = metadataProvider?.get() { all.merge(provided) { _, new in new } }
        if let own = event.metadata { all.merge(own) { _, new in new } }
        write(Self.line(event.level, label: label, message: "\(event.message)", metadata: all, journal: journal))
    }

    /// One log line, newline included.
    static func line(
        _ level: Logger.Level, label: String, message: String, metadata: Logger.Metadata, journal: Bool,
        now: Date = Date()
    ) -> String {
        let order = ["task": 0, "type": 1]
        let fields = metadata.sorted { (order[$0.key] ?? 2, $0.key) < (order[$1.key] ?? 2, $1.key) }.map {
            "\(escaped($0.key, quoting: false))=\(value($0.value))"
        }
        let text = ([escaped(message, quoting: false)] + fields).joinedPlainly(separator: " ")
        if journal { return "<\(Journal.priority(level))>\(label): \(text)\n" }
        return "\(now.formatted(.iso8601)) \(level) \(label): \(text)\n"
    }

    private static func value(_ value: Logger.Metadata.Value) -> String {
        switch value {
        case .string(let text): return escaped(text, quoting: true)
        case .stringConvertible(let convertible): return escaped(convertible.description, quoting: true)
        case .array, .dictionary: return escaped(value.description, quoting: true)
        }
    }

    /// Control characters as `\n`, `\u{1b}`…; with `quoting`, a value with a space, `"` or `=` in
    /// double quotes.
    static func escaped(_ text: String, quoting: Bool) -> String {
        var out = ""
        var needsQuotes = text.isEmpty
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\"":
                out += quoting ? "\\\"" : "\""
                needsQuotes = true
            case "\\": out += quoting ? "\\\\" : "\\"
            case " ", "=":
                out.unicodeScalars.append(scalar)
                needsQuotes = true
            default:
                if scalar.value < 0x20 || scalar.value == 0x7f || (0x80..<0xa0).contains(scalar.value) {
                    out += "\\u{\(String(scalar.value, radix: 16))}"
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return quoting && needsQuotes ? "\"\(out)\"" : out
    }
}
