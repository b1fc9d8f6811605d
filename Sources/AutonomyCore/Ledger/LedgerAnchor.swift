import Foundation
import GRDB

/// A ledger row's id and hash, kept outside the database (the journal, a file, another machine):
/// someone who rewrites the ledger and re-hashes every later row still cannot make it match.
public struct LedgerAnchor: Sendable, Equatable {
    public var id: Int64
    public var hash: String

    public init(id: Int64, hash: String) {
        self.id = id
        self.hash = hash
    }

    /// The journal's MESSAGE_ID for "the ledger's head is now …", stable across versions.
    public static let messageID = "5f3c1b6e8a2d4c7f9b0e1a2d3c4b5a69"

    /// Reads anchors from `id hash` lines, or from `journalctl -o json` output (the
    /// `AUTONOMY_LEDGER_ID` / `AUTONOMY_LEDGER_HASH` fields, or the message text). Anything else is
    /// skipped; the second value says how many lines were.
    public static func parse(_ text: String) -> (anchors: [LedgerAnchor], skipped: Int) {
        var anchors: [LedgerAnchor] = []
        var skipped = 0
        for raw in text.split(separator: "\n") {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            if line.hasPrefix("{"), let value = try? JSONValue.parse(line) {
                if let id = value[path: "AUTONOMY_LEDGER_ID"]?.stringValue.flatMap(Int64.init),
                    let hash = value[path: "AUTONOMY_LEDGER_HASH"]?.stringValue, isHash(hash)
                {
                    anchors.append(LedgerAnchor(id: id, hash: hash))
                } else if let message = value[path: "MESSAGE"]?.stringValue, let anchor = fromMessage(message) {
                    anchors.append(anchor)
                } else {
                    skipped += 1
                }
                continue
            }
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if fields.count >= 2, let id = Int64(fields[0]), isHash(String(fields[1])) {
                anchors.append(LedgerAnchor(id: id, hash: String(fields[1])))
            } else if let anchor = fromMessage(line) {
                anchors.append(anchor)
            } else {
                skipped += 1
            }
        }
        return (anchors, skipped)
    }

    /// `ledger head: row 42 hash abc…`, what work-once writes.
    public var message: String { "ledger head: row \(id) hash \(hash)" }

    static func fromMessage(_ text: String) -> LedgerAnchor? {
        guard let range = text.range(of: "ledger head: row ") else { return nil }
        let fields = text[range.upperBound...].split(separator: " ")
        guard fields.count >= 3, let id = Int64(fields[0]), fields[1] == "hash", isHash(String(fields[2])) else {
            return nil
        }
        return LedgerAnchor(id: id, hash: String(fields[2]))
    }

    static func isHash(_ text: String) -> Bool { text.count == 64 && text.allSatisfy(\.isHexDigit) }
}

/// What checking the ledger against anchors found.
public struct AnchorReport: Sendable, Equatable {
    public var checked: Int
    /// Anchors the ledger does not match, and how.
    public var mismatches: [(id: Int64, problem: String)]

    /// Each anchor against the hash its row holds now (`found`, by id; absent: the row is gone).
    init(_ anchors: [LedgerAnchor], found: [Int64: String]) {
        var mismatches: [(Int64, String)] = []
        for anchor in anchors {
            guard let hash = found[anchor.id] else {
                mismatches.append((anchor.id, "row \(anchor.id) is gone: the ledger was cut back"))
                continue
            }
            if hash != anchor.hash {
                mismatches.append(
                    (
                        anchor.id,
                        "row \(anchor.id) has hash \(hash), the anchor says \(anchor.hash): the ledger was rewritten"
                    ))
            }
        }
        self.init(checked: anchors.count, mismatches: mismatches)
    }

    public init(checked: Int, mismatches: [(id: Int64, problem: String)]) {
        self.checked = checked
        self.mismatches = mismatches
    }

    public static func == (a: AnchorReport, b: AnchorReport) -> Bool {
        a.checked == b.checked && a.mismatches.map(\.id) == b.mismatches.map(\.id)
    }
}

extension AutonomyStore {
    /// The newest ledger row's id and hash; nil for an empty ledger.
    public func ledgerHead() throws -> LedgerAnchor? {
        try read("read the ledger's head") { db in
            try Row.fetchOne(db.cachedStatement(sql: "SELECT id, hash FROM ledger ORDER BY id DESC LIMIT 1")).map {
                LedgerAnchor(id: try $0.decode(atIndex: 0), hash: try $0.decode(atIndex: 1))
            }
        }
    }

    /// Checks each anchor against the ledger: the row must exist and carry that hash.
    public func checkAnchors(_ anchors: [LedgerAnchor]) throws -> AnchorReport {
        try read("check the ledger against anchors") { db in
            var found: [Int64: String] = [:]
            for anchor in anchors {
                found[anchor.id] = try String.fetchOne(
                    db, sql: "SELECT hash FROM ledger WHERE id = ?", arguments: [anchor.id])
            }
            return AnchorReport(anchors, found: found)
        }
    }
}
