import ArgumentParser
import AutonomyCore
import Foundation

/// `autonomy export --to postgres://…`: moves an SQLite queue to PostgreSQL.
struct Export: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Copy this SQLite queue into a new PostgreSQL database (tasks, approvals, ledger, budget history).",
        discussion: prose(
            """
            Copies in one transaction, into a database with no tasks yet: the ledger keeps its ids and
            hashes, so 'autonomy ledger verify' on PostgreSQL finds the same chain and the same last
            hash. Stop the worker timer first: a running task refuses the export. Audit history,
            findings, proposals, overrides and heal's state move too; producer tokens and operator
            sessions stay behind (issue tokens again on the new database). The password comes from PGPASSWORD, a ~/.pgpass line or store.password_env,
            never from the URL.
            Example: PGPASSWORD=… autonomy export --to postgres://autonomy@db.internal/autonomy
            """))

    @OptionGroup var global: GlobalOptions

    @Option(help: ArgumentHelp("The PostgreSQL database to fill (empty).", valueName: "url"))
    var to: String

    func run() async throws {
        let loaded = try global.loadConfiguration()
        guard case .sqlite = try global.location(loaded) else {
            throw CLIFailure("export reads an SQLite database: point --database at the file", code: .usage)
        }
        let source = try global.open(loaded, create: false)
        let url = try PostgresURL(parsing: to)
        let target = try await global.openPostgres(url, loaded)
        let report: ExportReport
        do {
            report = try await target.importing(from: source, now: try currentClock().now())
        } catch let error as ExportError {
            await target.close()
            throw CLIFailure(error.description, code: .refused)
        } catch {
            await target.close()
            throw error
        }
        await target.close()
        print("exported \(source.path) into \(url):")
        for table in report.tables { print("  \(table.name): \(table.rows) rows") }
        print("the chain holds on PostgreSQL: \(report.chain.rows) rows, last hash \(report.chain.lastHash)")
        if !report.leftBehind.isEmpty {
            print(
                "left in SQLite: "
                    + report.leftBehind.map { "\($0.name) (\($0.rows))" }.joined(separator: ", "))
        }
        print("next: set \"database\" to the URL on every host, and stop using \(source.path)")
    }
}
