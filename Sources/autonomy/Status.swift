import ArgumentParser
import AutonomyCore
import Foundation

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "The queue at a glance: counts by state and type, waiting times, dead tasks.",
        discussion: "Through the gate, a producer sees its own tasks only. Example: autonomy status")

    @OptionGroup var global: GlobalOptions
    @OptionGroup var gate: GateOptions

    @Flag(help: "Print as JSON.")
    var json = false

    func run() async throws {
        var request = GateRequest(verb: .status)
        request.json = json
        try await perform(request, global, gate)
    }
}
