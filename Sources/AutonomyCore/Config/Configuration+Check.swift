import Foundation

extension LoadedConfiguration {
    /// What `config check` finds on this machine: handler and notify programs that are missing or
    /// not executable, working directories that do not exist, a webhook secret that is not set,
    /// dangerous types with nobody to alert. Warnings, since the map may be checked on
    /// another machine than the one that runs it.
    public func machineWarnings(environment: [String: String] = ProcessEnvironment.variables) -> [String] {
        let environmentPath = environment["PATH"]
        var warnings: [String] = []
        for type in configuration.taskTypes.values.sorted(by: { $0.name < $1.name }) {
            guard case .exec(let exec) = type.handler else { continue }
            let key = "task_types.\(type.name).handler.exec"
            let program = exec.argv[0]
            if program.contains("/") {
                let path = ConfigLoader.absolute(program, base: baseDirectory)
                if !FileManager.default.fileExists(atPath: path) {
                    warnings.append("\(key).argv[0]: \(path) does not exist on this machine")
                } else if !FileManager.default.isExecutableFile(atPath: path) {
                    warnings.append("\(key).argv[0]: \(path) is not executable (chmod +x it)")
                }
            } else {
                let folders = (environmentPath ?? "").split(separator: ":").map(String.init)
                let found = folders.contains {
                    FileManager.default.isExecutableFile(atPath: ($0 as NSString).appendingPathComponent(program))
                }
                if !found { warnings.append("\(key).argv[0]: \"\(program)\" is not found in PATH") }
            }
            if let cwd = exec.cwd {
                var isFolder: ObjCBool = false
                let path = ConfigLoader.absolute(cwd, base: baseDirectory)
                if !FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) || !isFolder.boolValue {
                    warnings.append("\(key).cwd: \(path) is not a folder on this machine")
                }
            }
        }
        let notify = configuration.notify
        if let program = notify.command?.first,
            ExecRunner.locate(program, base: baseDirectory, searchPath: environmentPath).map({
                !FileManager.default.isExecutableFile(atPath: $0)
            }) ?? true
        {
            warnings.append("notify.command[0]: \(program) is not an executable program on this machine")
        }
        if let name = notify.webhook?.secretEnv, (environment[name] ?? "").isEmpty {
            warnings.append(
                "notify.webhook.secret_env: \(name) is not set here; the worker needs it in its environment")
        }
        for (index, model) in configuration.gateway.models.enumerated() {
            if let name = model.apiKeyEnv, (environment[name] ?? "").isEmpty {
                warnings.append(
                    "gateway.models[\(index)].api_key_env: \(name) is not set here; calls to \(model.name) will fail over"
                )
            }
        }
        for type in configuration.taskTypes.values.sorted(by: { $0.name < $1.name }) {
            if case .llm = type.handler, configuration.gateway.models.isEmpty {
                warnings.append("task_types.\(type.name).handler.llm: no model is configured under gateway.models")
            }
        }
        warnings += trustWarnings()
        for type in configuration.taskTypes.values.sorted(by: { $0.name < $1.name }) where type.safety == .dangerous {
            if notify.channels.isEmpty {
                warnings.append(
                    "notify: no channel is configured, so nobody is alerted when a \(type.name) task waits for approval"
                )
                break
            }
        }
        return warnings
    }

    /// Who may sign decisions, as `config check` reports it: the count, or why none can.
    public func signersSummary() -> (count: Int, problem: String?) {
        do {
            let signers = try DecisionVerifier(settings: configuration.approvals).signers()
            let count = signers.decisionSignerCount
            return (count, count == 0 ? "\(signers.path) lists no key that may sign decisions" : nil)
        } catch {
            return (0, error.description)
        }
    }

    /// What would stop the trust rules from working as written.
    private func trustWarnings() -> [String] {
        var warnings: [String] = []
        if let path {
            do {
                try FileTrust.check(path, what: "the configuration")
            } catch {
                warnings.append("\(error.description) (work-once, gate, approve and reject refuse it)")
            }
        }
        let (_, problem) = signersSummary()
        if let problem, configuration.taskTypes.values.contains(where: \.canBeDangerous) {
            warnings.append("approvals.allowed_signers: \(problem); nothing dangerous can be approved")
        }
        if let signersPath = configuration.approvals.allowedSigners,
            let text = try? String(contentsOfFile: signersPath, encoding: .utf8)
        {
            warnings += AllowedSigners.parse(text, path: signersPath).warnings
        }
        let producers = configuration.producers
        for (section, rules) in [("users", producers.users), ("groups", producers.groups)] {
            for (name, rule) in rules.sorted(by: { $0.key < $1.key }) {
                for type in rule.types where type != "*" && configuration.taskTypes[type] == nil {
                    warnings.append("producers.\(section).\(name).types: \"\(type)\" is not a declared task type")
                }
            }
        }
        return warnings
    }
}
