import ArgumentParser
import AutonomyCore
import Foundation

struct ConfigCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config",
        abstract: "Check the configuration.",
        subcommands: [Check.self])

    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "check",
            abstract: "Validate the configuration and print a summary of the declared map.",
            discussion: prose(
                """
                Exits 0 when the configuration can be used (warnings included), 78 when it cannot.
                Example: autonomy config check --config /etc/autonomy/autonomy.json
                """))

        @OptionGroup var global: GlobalOptions

        @Flag(help: "Print the summary as JSON.")
        var json = false

        func run() async throws {
            let loaded = try global.loadConfiguration(quiet: true)
            let configuration = loaded.configuration
            let warnings = loaded.warnings + loaded.advice + loaded.machineWarnings()
            let location = try global.location(loaded)
            let database: String
            switch location {
            case .sqlite(let path): database = path
            case .postgres(let url): database = url.description
            }
            let types = configuration.taskTypes.values.sorted { $0.name < $1.name }
            // The overrides in effect, when the database exists (config check never creates one).
            var overrides: [Override] = []
            var unreadable: String?
            if case .sqlite = location, FileManager.default.fileExists(atPath: database) {
                do {
                    overrides = try global.open(loaded, create: false).overrides(now: try currentClock().now())
                } catch {
                    unreadable = "the database's overrides could not be read: \(error)"
                }
            }
            if json {
                struct TypeSummary: Encodable {
                    var name, safety: String
                    @Nullable var owner: String?
                    var timeout: String
                    var maxAttempts: Int
                    enum CodingKeys: String, CodingKey {
                        case name, safety, owner, timeout
                        case maxAttempts = "max_attempts"
                    }
                }
                struct Output: Encodable {
                    @Nullable var file: String?
                    var database: String
                    var version: Int
                    var taskTypes: [TypeSummary]
                    var components: [String]
                    var signers: Int
                    var producers: [String: [String]]
                    var overrides: [Override]
                    var warnings: [String]
                    enum CodingKeys: String, CodingKey {
                        case file, database, version
                        case taskTypes = "task_types"
                        case components, signers, producers, overrides, warnings
                    }
                }
                return try printJSON(
                    Output(
                        file: loaded.path, database: database, version: configuration.version,
                        taskTypes: types.map {
                            TypeSummary(
                                name: $0.name, safety: $0.safety.rawValue, owner: $0.owner,
                                timeout: $0.effectiveTimeout(configuration.worker).description,
                                maxAttempts: $0.retry.maxAttempts)
                        },
                        components: configuration.components.map(\.name),
                        signers: loaded.signersSummary().count,
                        producers: [
                            "users": configuration.producers.users.keys.sorted(),
                            "groups": configuration.producers.groups.keys.sorted(),
                        ],
                        overrides: overrides, warnings: warnings + (unreadable.map { [$0] } ?? [])))
            }
            print("config:   \(loaded.path ?? "built-in defaults")")
            print("database: \(database)")
            print("timezone: \(configuration.timezoneName)")
            print("worker:   lease \(configuration.worker.lease), drain up to \(configuration.worker.drainMaxSeconds)s")
            if types.isEmpty {
                print("task types: none declared, so every task is refused")
            } else {
                print("task types (\(types.count)):")
                print(
                    table(
                        ["  NAME", "SAFETY", "OWNER", "TIMEOUT", "ATTEMPTS", "HANDLER"],
                        types.map { type in
                            var handler = ""
                            switch type.handler {
                            case .exec(let exec): handler = exec.argv.joined(separator: " ")
                            case .llm(let llm): handler = "llm (\(llm.tier.rawValue))"
                            case .remediation: handler = "built in"
                            }
                            return [
                                "  " + type.name, type.safety.rawValue + (type.safetyDefaulted ? " (default)" : ""),
                                type.owner ?? "-", type.effectiveTimeout(configuration.worker).description,
                                String(type.retry.maxAttempts), String(handler.prefix(60)),
                            ]
                        }))
            }
            let gateway = configuration.gateway
            print(
                String(
                    format: "gateway:  $%.2f a day (free models only above %.0f%%); ", gateway.dailyCapUSD,
                    gateway.softCapRatio * 100)
                    + (gateway.models.isEmpty
                        ? "no models"
                        : gateway.models.map { "\($0.name) (\($0.tier.rawValue))" }.joined(separator: ", ")))
            let channels = configuration.notify.channels.map(\.rawValue)
            print(
                "alerts:   \(channels.isEmpty ? "none" : channels.joined(separator: ", "))"
                    + (configuration.approvals.baseURL.map { "; one-click links from \($0)" } ?? ""))
            let signers = loaded.signersSummary()
            print(
                "signers:  \(signers.count) key(s) may sign decisions"
                    + (configuration.approvals.allowedSigners.map { " (\($0))" }
                        ?? " (approvals.allowed_signers not set)")
                    + ", approved tasks run within \(configuration.approvals.runWithin)")
            let producers = configuration.producers
            let entries =
                producers.users.sorted { $0.key < $1.key }.map {
                    "\($0.key): \($0.value.types.joined(separator: ", "))"
                }
                + producers.groups.sorted { $0.key < $1.key }.map {
                    "group \($0.key): \($0.value.types.joined(separator: ", "))"
                }
            print(
                "producers: " + (entries.isEmpty ? "none (the gate refuses everyone)" : entries.joined(separator: "; "))
            )
            for type in types where !type.rules.isEmpty {
                print(
                    "rules for \(type.name): "
                        + type.rules.map { "\($0.summary) → \($0.safety.rawValue)" }.joined(separator: "; "))
            }
            if !configuration.components.isEmpty {
                print("components (\(configuration.components.count)):")
                for component in configuration.components {
                    print(
                        "  \(component.name)  owner \(component.owner ?? "-")  types: \(component.taskTypes.joined(separator: ", "))"
                    )
                }
            }
            if !overrides.isEmpty {
                print("overrides in effect (on top of this file; 'autonomy overrides remove ID' ends one):")
                for override in overrides { print("  " + override.line) }
            }
            if !configuration.remediations.isEmpty {
                print(
                    "remediations: "
                        + configuration.remediations.sorted { $0.key < $1.key }.map { name, command in
                            "\(name) (for \(command.findings.map(\.rawValue).sorted().joined(separator: ", ")))"
                        }.joined(separator: "; "))
            }
            let heal = configuration.heal
            print(
                "heal:     "
                    + (heal.enabled
                        ? "enabled; applies on its own: "
                            + (heal.autoApply.isEmpty
                                ? "nothing (auto_apply is empty)"
                                : heal.autoApply.map(\.summary).joined(separator: "; "))
                        : "disabled (heal.enabled: false): reports only"
                            + (heal.autoApply.isEmpty
                                ? ""
                                : "; would apply on its own: " + heal.autoApply.map(\.summary).joined(separator: "; ")))
            )
            let shown = warnings + (unreadable.map { [$0] } ?? [])
            for warning in shown { print("warning: \(warning)") }
            print(shown.isEmpty ? "ok" : "ok, with \(shown.count) warning(s)")
        }
    }
}
