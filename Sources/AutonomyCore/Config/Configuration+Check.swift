import Foundation

extension LoadedConfiguration {
    /// What `config check` finds on this machine: handler programs that are missing or not
    /// executable, working directories that do not exist. Warnings, since the map may be checked on
    /// another machine than the one that runs it.
    public func machineWarnings(path environmentPath: String? = ProcessInfo.processInfo.environment["PATH"]) -> [String]
    {
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
        return warnings
    }
}
