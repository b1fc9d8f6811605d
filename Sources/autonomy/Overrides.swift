import ArgumentParser
import AutonomyCore
import Foundation

struct OverridesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "overrides",
        abstract: "The runtime adjustments approved proposals made: list them, or end one.",
        discussion: prose(
            """
            An approved fix proposal (autonomy audit) may pause a type or raise a timeout, the lease or
            a type's attempts. The worker applies these on top of the configuration file, which is
            never rewritten; status, map and config check show them.
            Example: autonomy overrides remove 3 --reason "handler reinstalled"
            """),
        subcommands: [List.self, Remove.self], defaultSubcommand: List.self)

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "list", abstract: "The overrides in effect (the default).",
            discussion: "Example: autonomy overrides --json")

        @OptionGroup var global: GlobalOptions
        @Flag(help: "Print as JSON.") var json = false

        func run() async throws {
            let loaded = try global.loadConfiguration()
            let now = try currentClock().now()
            let overrides = try await global.onEither(
                loaded, create: false, sqlite: { try $0.overrides(now: now) },
                postgres: { try await $0.overrides(now: now) })
            if json { return try printJSON(overrides) }
            if overrides.isEmpty {
                return print("no override is in effect: the worker runs the configuration as written")
            }
            for override in overrides { print(override.line) }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "remove", abstract: "End an override now (a ledger row says who and why).",
            discussion: prose(
                """
                Exits 66 when there is no such override, 1 when it already ended.
                Example: autonomy overrides remove 3 --reason "handler reinstalled"
                """))

        @OptionGroup var global: GlobalOptions
        @Argument(help: "The override's id (autonomy overrides).") var id: Int64
        @Option(help: "Why, for the ledger.") var reason: String?
        @Option(help: "Who removes it (default: $AUTONOMY_OPERATOR, else the login user).") var by: String?

        func run() async throws {
            let loaded = try global.loadConfiguration()
            let actor = try operatorName(by)
            let now = try currentClock().now()
            do {
                let removed = try await global.onEither(
                    loaded, create: false,
                    sqlite: { try $0.removeOverride(id: id, by: actor, reason: reason, now: now) },
                    postgres: { try await $0.removeOverride(id: id, by: actor, reason: reason) })
                print(
                    "removed override \(removed.id) (\(removed.effect) \(removed.type ?? "(all types)")): the next work-once runs without it"
                )
            } catch let error as OverrideError {
                switch error {
                case .notFound: throw CLIFailure(error.description, code: .notFound)
                case .notActive: throw CLIFailure(error.description, code: .refused)
                }
            }
        }
    }
}
