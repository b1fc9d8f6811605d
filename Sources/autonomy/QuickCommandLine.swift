import ArgumentParser

/// Reads the command lines that scripts and timers run thousands of times a day — `--version`,
/// one `enqueue`, `work-once` — without swift-argument-parser.
///
/// Why: the parser's first parse in a process looks up each property wrapper's protocol
/// conformances, and on Linux every first lookup scans all of the binary's 12,000 conformance
/// records. In `callgrind`, that was 29 of the 56 million instructions of one `autonomy enqueue`,
/// and 15 of the 22 million of `--version`.
///
/// What is read here is a strict subset of what the parser accepts: the subcommand first, then
/// long options each given once, a value that is not empty and does not start with `-` (but `-`
/// alone, standard input), and at
/// most the one positional argument. Anything else returns nil and goes to the parser, which
/// answers it as it always has: help, every usage error, a failed validation, `--`, a repeated or
/// unknown option. `QuickCommandLineTests` pins that for every line read here the parser builds
/// the same command, property by property.
enum QuickCommandLine {
    enum Reading {
        case version
        case command(any AsyncParsableCommand)
    }

    static func read(_ arguments: [String]) -> Reading? {
        if arguments == ["--version"] { return .version }
        guard let subcommand = arguments.first else { return nil }
        let rest = arguments.dropFirst()
        let command: (any AsyncParsableCommand)?
        switch subcommand {
        case "enqueue":
            command = Line(
                rest, flags: ["json"], positionals: 1,
                options: [
                    "config", "database", "gate", "payload", "payload-file", "priority", "delay", "run-at",
                    "max-attempts", "key", "source", "subject", "batch",
                ]
            ).flatMap(enqueue)
        case "work-once":
            command = Line(
                rest, flags: ["drain", "json"], positionals: 0,
                options: ["config", "database", "max-seconds", "max-tasks"]
            ).flatMap(workOnce)
        default:
            command = nil
        }
        return command.map(Reading.command)
    }

    /// Every property is set, as the parser sets it: a wrapper left as declared would stop the
    /// process when `run` reads it.
    private static func enqueue(_ line: Line) -> Enqueue? {
        var command = Enqueue()
        command.global = global(line)
        var gate = GateOptions()
        gate.path = line.options["gate"]
        command.gate = gate
        command.type = line.positionals.first
        var payload = PayloadOptions()
        payload.payload = line.options["payload"]
        payload.payloadFile = line.options["payload-file"]
        command.payloadOptions = payload
        guard let priority = line.integer("priority"), let maxAttempts = line.integer("max-attempts") else {
            return nil
        }
        command.priority = priority
        command.maxAttempts = maxAttempts
        command.delay = line.options["delay"]
        command.runAt = line.options["run-at"]
        command.key = line.options["key"]
        command.source = line.options["source"]
        command.subject = line.options["subject"]
        command.batch = line.options["batch"]
        command.json = line.flags.contains("json")
        // A refusal is the parser's to word, with its usage line. The parser validates each group
        // as well as the command.
        guard (try? command.global.validate()) != nil, (try? command.gate.validate()) != nil,
            (try? command.payloadOptions.validate()) != nil, (try? command.validate()) != nil
        else { return nil }
        return command
    }

    private static func workOnce(_ line: Line) -> WorkOnce? {
        var command = WorkOnce()
        command.global = global(line)
        command.drain = line.flags.contains("drain")
        guard let maxSeconds = line.integer("max-seconds"), let maxTasks = line.integer("max-tasks") else {
            return nil
        }
        command.maxSeconds = maxSeconds
        command.maxTasks = maxTasks
        command.json = line.flags.contains("json")
        guard (try? command.global.validate()) != nil, (try? command.validate()) != nil else { return nil }
        return command
    }

    private static func global(_ line: Line) -> GlobalOptions {
        var global = GlobalOptions()
        global.config = line.options["config"]
        global.database = line.options["database"]
        return global
    }

    /// A command line split into long options, flags and positional arguments, or nil when any
    /// of it is outside the subset described above.
    struct Line {
        var options: [String: String] = [:]
        var flags: Set<String> = []
        var positionals: [String] = []

        init?<Arguments: Collection<String>>(
            _ arguments: Arguments, flags knownFlags: Set<String>, positionals most: Int, options known: Set<String>
        ) {
            var iterator = arguments.makeIterator()
            while let argument = iterator.next() {
                guard argument.hasPrefix("-") else {
                    // `help` after a subcommand is the parser's to interpret.
                    guard positionals.count < most, argument != "help", !argument.isEmpty else { return nil }
                    positionals.append(argument)
                    continue
                }
                guard argument.hasPrefix("--") else { return nil }
                var name = Substring(argument.dropFirst(2))
                var value: String?
                if let equals = name.firstIndex(of: "=") {
                    value = String(name[name.index(after: equals)...])
                    name = name[..<equals]
                }
                let key = String(name)
                if knownFlags.contains(key) {
                    guard value == nil, flags.insert(key).inserted else { return nil }
                } else if known.contains(key) {
                    // `-` alone is standard input, a value the parser takes as it is.
                    guard options[key] == nil, let given = value ?? iterator.next(), !given.isEmpty,
                        given == "-" || !given.hasPrefix("-")
                    else { return nil }
                    options[key] = given
                } else {
                    return nil
                }
            }
        }

        /// The option read as the parser reads an `Int`; `.some(nil)` when it was not given, nil
        /// when it is not a number.
        func integer(_ key: String) -> Int?? {
            guard let text = options[key] else { return .some(nil) }
            guard let value = Int(text) else { return nil }
            return .some(value)
        }
    }
}
