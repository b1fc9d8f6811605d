import Foundation

/// A configuration together with where it came from and what looked wrong but did not stop it.
public struct LoadedConfiguration: Sendable {
    public var configuration: Configuration
    /// The file read, or nil when the built-in defaults are in use.
    public var path: String?
    /// Unknown keys and other things an operator should look at.
    public var warnings: [String]
    /// Things worth a look that are not mistakes (no verifier, no safety rating): shown by
    /// `config check`, not by every command.
    public var advice: [String] = []

    /// No file: the built-in defaults (no task types, so everything is refused).
    public static var builtInDefaults: LoadedConfiguration {
        LoadedConfiguration(configuration: Configuration(), path: nil, warnings: [])
    }

    /// The folder relative paths in the file are taken from: the file's own, else the current one.
    public var baseDirectory: String {
        guard let path else { return FileManager.default.currentDirectoryPath }
        return (path as NSString).deletingLastPathComponent.isEmpty
            ? FileManager.default.currentDirectoryPath
            : (path as NSString).deletingLastPathComponent
    }
}

/// Finds, reads and checks the configuration.
///
/// Precedence: built-in defaults < file < environment (`AUTONOMY_CONFIG`, `AUTONOMY_DATABASE`) < flags.
public enum ConfigLoader {
    public static let configVariable = "AUTONOMY_CONFIG"
    public static let databaseVariable = "AUTONOMY_DATABASE"
    public static let defaultConfigFile = "autonomy.json"
    public static let defaultDatabaseFile = "autonomy.db"

    /// Loads the configuration: `explicitPath` > `AUTONOMY_CONFIG` > `./autonomy.json` if present >
    /// built-in defaults (no task types: everything is refused).
    ///
    /// - Throws: `ConfigError` naming the file and key path when the file is missing, unreadable or wrong.
    public static func load(
        explicitPath: String? = nil,
        environment: [String: String] = ProcessEnvironment.variables
    ) throws(ConfigError) -> LoadedConfiguration {
        let chosen: String?
        if let explicitPath, !explicitPath.isEmpty {
            chosen = explicitPath
        } else if let fromEnvironment = environment[configVariable], !fromEnvironment.isEmpty {
            chosen = fromEnvironment
        } else if FileManager.default.fileExists(atPath: defaultConfigFile) {
            // As git's safe.directory: a file someone else left in this folder is not our map.
            var info = stat()
            guard stat(defaultConfigFile, &info) == 0, info.st_uid == geteuid() else {
                throw ConfigError(
                    path: "",
                    message:
                        "./\(defaultConfigFile) is not yours (owned by uid \(info.st_uid)), so it is not used: pass --config to name the file you mean",
                    file: absolute(defaultConfigFile, base: FileManager.default.currentDirectoryPath))
            }
            chosen = defaultConfigFile
        } else {
            chosen = nil
        }
        guard let chosen else {
            return LoadedConfiguration(configuration: Configuration(), path: nil, warnings: [])
        }
        let path = absolute(chosen, base: FileManager.default.currentDirectoryPath)
        guard let data = FileManager.default.contents(atPath: path) else {
            var folder: ObjCBool = false
            let exists = FileManager.default.fileExists(atPath: path, isDirectory: &folder)
            throw ConfigError(
                path: "",
                message: folder.boolValue
                    ? "is a folder, not a file (pass --config with the path of your autonomy.json)"
                    : exists
                        ? "cannot read the file (check its permissions)"
                        : "no such file (pass --config with the path of your autonomy.json, or see config.example.json)",
                file: path)
        }
        var loaded = try parse(data, file: path)
        loaded.path = path
        if let key = loaded.configuration.serve.signingKey {
            loaded.configuration.serve.signingKey = absolute(key, base: loaded.baseDirectory)
        }
        if let signers = loaded.configuration.approvals.allowedSigners {
            loaded.configuration.approvals.allowedSigners = absolute(signers, base: loaded.baseDirectory)
        }
        return loaded
    }

    /// Decodes configuration text; `file` only labels errors.
    public static func parse(_ bytes: Data, file: String? = nil) throws(ConfigError) -> LoadedConfiguration {
        let warnings = ConfigWarnings()
        let configuration: Configuration
        let data = try utf8Text(bytes, file: file)
        if data.allSatisfy({ $0 == 0x20 || $0 == 0x0a || $0 == 0x0d || $0 == 0x09 }) {
            throw ConfigError(
                path: "",
                message:
                    "the file is empty: write a JSON object, at least {\"version\": 1} (config.example.json shows every key)",
                file: file)
        }
        let document: JSONValue
        do {
            document = try JSONParser.parse(data)
        } catch {
            throw ConfigError(path: "", message: "not valid JSON (\(error.reason))", file: file)
        }
        do {
            let decoder = ConfigValueDecoder(document, userInfo: [ConfigWarnings.userInfoKey: warnings])
            configuration = try Configuration(from: decoder)
        } catch let error as DecodingError {
            throw ConfigError.from(error, file: file)
        } catch {
            throw ConfigError(path: "", message: "\(error)", file: file)
        }
        let (mistakes, advice) = crossCheck(configuration)
        var loaded = LoadedConfiguration(
            configuration: configuration, path: file, warnings: (warnings.all + mistakes).sorted())
        loaded.advice = advice.sorted()
        return loaded
    }

    /// The file's text without a UTF-8 byte-order mark (Notepad and PowerShell write one), as
    /// `JSONDecoder` took it; a file in UTF-16 or UTF-32 is refused with what to do.
    static func utf8Text(_ bytes: Data, file: String?) throws(ConfigError) -> Data {
        let start = bytes.startIndex
        if bytes.count >= 3, bytes[start] == 0xEF, bytes[start + 1] == 0xBB, bytes[start + 2] == 0xBF {
            return bytes.dropFirst(3)
        }
        // JSON text starts with an ASCII character: a zero byte beside it, or a UTF-16 mark, is
        // another encoding.
        if bytes.count >= 2, bytes[start] == 0 || bytes[start + 1] == 0 || bytes[start] == 0xFF || bytes[start] == 0xFE
        {
            throw ConfigError(
                path: "", message: "the file is not UTF-8 (UTF-16 or UTF-32?): save it as UTF-8", file: file)
        }
        return bytes
    }

    /// Where the database is: `flag` > `AUTONOMY_DATABASE` > the file's `database` (relative to the
    /// file's folder) > `./autonomy.db`.
    public static func databasePath(
        flag: String?, loaded: LoadedConfiguration,
        environment: [String: String] = ProcessEnvironment.variables
    ) -> String {
        let cwd = FileManager.default.currentDirectoryPath
        if let flag, !flag.isEmpty { return absolute(flag, base: cwd) }
        if let fromEnvironment = environment[databaseVariable], !fromEnvironment.isEmpty {
            return absolute(fromEnvironment, base: cwd)
        }
        if let fromFile = loaded.configuration.database, !fromFile.isEmpty {
            return absolute(fromFile, base: loaded.baseDirectory)
        }
        return absolute(defaultDatabaseFile, base: cwd)
    }

    /// Where the database is, by the same precedence as `databasePath`: a `postgres://` URL
    /// (checked, never holding a password), or an SQLite file.
    public static func databaseLocation(
        flag: String?, loaded: LoadedConfiguration,
        environment: [String: String] = ProcessEnvironment.variables
    ) throws(ConfigError) -> DatabaseLocation {
        let given = [flag, environment[databaseVariable], loaded.configuration.database]
            .compactMap { $0 }.first { !$0.isEmpty }
        if let given, DatabaseLocation.isPostgresURL(given) {
            return .postgres(try PostgresURL(parsing: given, environment: environment))
        }
        return .sqlite(path: databasePath(flag: flag, loaded: loaded, environment: environment))
    }

    static func absolute(_ path: String, base: String) -> String {
        if path.hasPrefix("/") { return path }
        if path.hasPrefix("~/") {
            return (UserHome.path as NSString).appendingPathComponent(String(path.dropFirst(2)))
        }
        return ((base as NSString).appendingPathComponent(path) as NSString).standardizingPath
    }

    /// Checks that span sections: what each section's decoder cannot see alone.
    private static func crossCheck(_ configuration: Configuration) -> (warnings: [String], advice: [String]) {
        var warnings: [String] = []
        var advice: [String] = []
        for (index, component) in configuration.components.enumerated() {
            for type in component.taskTypes where configuration.taskTypes[type] == nil {
                warnings.append("components[\(index)].task_types: \"\(type)\" is not a declared task type")
            }
        }
        let worker = configuration.worker
        if worker.lease.milliseconds <= 2 * worker.killGrace.milliseconds {
            advice.append(
                "worker.lease: \(worker.lease) is not more than twice worker.kill_grace (\(worker.killGrace)): a handler stopped because its lease could not be renewed may still run when another worker takes the task over; lengthen the lease"
            )
        }
        for type in configuration.worker.types ?? []
        where configuration.taskTypes[type] == nil && type != TaskType.remediationTypeName {
            warnings.append("worker.types: \"\(type)\" is not a declared task type")
        }
        for type in configuration.taskTypes.values.sorted(by: { $0.name < $1.name })
        where (configuration.worker.types ?? [type.name]).contains(type.name)
            && !Set(type.runOn).isSubset(of: Set(configuration.worker.tags))
        {
            advice.append(
                "task_types.\(type.name).run_on: this host lacks the tags \(Set(type.runOn).subtracting(configuration.worker.tags).sorted()), so its tasks wait for a host that has them"
            )
        }
        for type in configuration.taskTypes.values where type.verify.isEmpty {
            advice.append("task_types.\(type.name).verify: no verifier, so \"done\" only means the handler exited 0")
        }
        for type in configuration.taskTypes.values
        where type.safety == .safe && type.rules.contains(where: { $0.safety == .dangerous }) {
            advice.append(
                "task_types.\(type.name).rules: the type is rated safe and only deny rules guard it, so a payload no rule foresaw runs without approval; rate it dangerous and let safe rules (with only_keys) allow the payloads you know"
            )
        }
        for type in configuration.taskTypes.values where type.safetyDefaulted {
            advice.append(
                "task_types.\(type.name).safety: not set, so the type is rated dangerous (every task waits for approval)"
            )
        }
        return (warnings, advice)
    }
}

extension LoadedConfiguration {
    /// Refuses a configuration file that someone other than root or this user could have written
    /// (as sshd's StrictModes does): the commands that run handlers or decide trust only read rules
    /// that an agent could not have rewritten.
    ///
    /// - Throws: `ConfigError` naming the file and the fix.
    public func requireTrusted() throws(ConfigError) {
        guard let path else { return }
        do {
            try FileTrust.check(path, what: "the configuration")
        } catch {
            throw ConfigError(path: "", message: error.description, file: path)
        }
    }
}

extension ConfigLoader {
    /// A path as given on the command line, made absolute against the current folder.
    public static func absolutePath(_ path: String) -> String {
        absolute(path, base: FileManager.default.currentDirectoryPath)
    }
}
