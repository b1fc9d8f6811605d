import AutonomyCore
import Foundation
import Testing

/// `make install` and the systemd set-up files, as a packager and `systemd-sysusers` /
/// `systemd-tmpfiles` use them. (packaging/deb/build.sh builds the .deb from this tree; CI builds it.)
@Suite struct PackagingTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    private func shell(_ script: String) throws -> (status: Int32, output: String) {
        // Both streams into one, in order, as a terminal shows them.
        let ran = Tool.run(
            "/bin/sh", ["-c", "cd \"$1\" || exit 1; (\(script)) 2>&1", "sh", Self.root], timeout: .minutes(10))
        guard case .exited(let status) = ran.status else { throw CLIFailureInTest("sh: \(ran.detail)") }
        return (status, ran.stdout)
    }

    private func tree(_ folder: String) throws -> [String] {
        try shell("cd '\(folder)' && find . -mindepth 1 | sort").output.split(separator: "\n").map(String.init)
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/make")))
    func theReleaseBuildLinksTheCxxRuntimeIn() throws {
        // What `make build` would run, printed, not run: a linker script named as the `-lstdc++`
        // the Swift driver asks for, in a folder the linker searches first, naming the archive.
        let planned = try shell("make --no-print-directory -n build BUILD_DIR=/tmp/autonomy-plan")
        #expect(planned.status == 0, "\(planned.output)")
        // The archive the clang beside swift links with, as the Makefile asks for it.
        let archive = try shell(#"$(dirname "$(realpath "$(command -v swift)")")/clang -print-file-name=libstdc++.a"#)
            .output.trimmingCharacters(in: .whitespacesAndNewlines)
        let flags =
            "--static-swift-stdlib -Xswiftc -Xfrontend -Xswiftc -disable-concrete-type-metadata-mangled-name-accessors"
        guard archive.hasPrefix("/"), FileManager.default.fileExists(atPath: archive) else {
            // None here: the binary loads libstdc++.so, as the Makefile says.
            #expect(planned.output.contains("\(flags) --scratch-path /tmp/autonomy-plan"), "\(planned.output)")
            #expect(!planned.output.contains("static-libstdc++"))
            return
        }
        #expect(
            planned.output.contains(
                #"echo 'INPUT("\#(archive)")' > '/tmp/autonomy-plan/static-libstdc++/libstdc++.so'"#),
            "\(planned.output)")
        #expect(
            planned.output.contains(
                "\(flags) -Xlinker '-L/tmp/autonomy-plan/static-libstdc++' --scratch-path /tmp/autonomy-plan"),
            "\(planned.output)")
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/make")))
    func makeInstallLaysOutTheTreeAndNeverReplacesAConfiguration() throws {
        let stage = (NSTemporaryDirectory() as NSString).appendingPathComponent("stage-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(atPath: stage) }
        let install = "make --no-print-directory install DESTDIR='\(stage)' PREFIX=/usr BINARY='\(autonomyBinary)'"
        let first = try shell(install)
        #expect(first.status == 0, "\(first.output)")
        let units = SystemdUnitTests.units.map { "./usr/lib/systemd/system/\($0)" }
        let expected =
            [
                "./etc", "./etc/autonomy", "./etc/autonomy/autonomy.json", "./usr", "./usr/bin", "./usr/bin/autonomy",
                "./usr/lib", "./usr/lib/systemd", "./usr/lib/systemd/system", "./usr/lib/sysusers.d",
                "./usr/lib/sysusers.d/autonomy.conf", "./usr/lib/tmpfiles.d", "./usr/lib/tmpfiles.d/autonomy.conf",
                "./usr/share", "./usr/share/autonomy", "./usr/share/autonomy/autonomy.example.json",
                "./usr/share/bash-completion", "./usr/share/bash-completion/completions",
                "./usr/share/bash-completion/completions/autonomy", "./usr/share/fish",
                "./usr/share/fish/vendor_completions.d", "./usr/share/fish/vendor_completions.d/autonomy.fish",
                "./usr/share/man", "./usr/share/man/man1", "./usr/share/man/man1/autonomy.1", "./usr/share/zsh",
                "./usr/share/zsh/vendor-completions", "./usr/share/zsh/vendor-completions/_autonomy",
            ] + units
        #expect(try tree(stage) == expected.sorted())
        // The units name the binary where it was installed.
        let worker = try String(
            contentsOfFile: "\(stage)/usr/lib/systemd/system/autonomy-worker.service", encoding: .utf8)
        #expect(worker.contains("ExecStart=/usr/bin/autonomy work-once --drain"))
        #expect(!worker.contains("/usr/local/bin"))
        // Completions for every command, and a man page that documents them.
        let bash = try String(
            contentsOfFile: "\(stage)/usr/share/bash-completion/completions/autonomy", encoding: .utf8)
        #expect(!bash.hasPrefix("#!") && bash.contains("doctor") && bash.contains("work-once"))
        let fish = try String(
            contentsOfFile: "\(stage)/usr/share/fish/vendor_completions.d/autonomy.fish", encoding: .utf8)
        #expect(fish.contains("doctor"))
        let manual = try String(contentsOfFile: "\(stage)/usr/share/man/man1/autonomy.1", encoding: .utf8)
        let help = try shell("'\(autonomyBinary)' --help").output
        // A command's line starts with two spaces and its name; its wrapped help is indented more.
        let commands = (help.components(separatedBy: "SUBCOMMANDS:").last ?? "").split(separator: "\n").compactMap {
            line -> String? in
            guard line.hasPrefix("  "), line.dropFirst(2).first?.isLowercase == true else { return nil }
            return line.split(separator: " ").first.map(String.init)
        }
        #expect(commands.count > 20)
        for command in commands where command != "help" {
            #expect(manual.contains(".It Em \(command)"), "the man page lacks \(command): run `make man`")
        }
        var mode = stat()
        #expect(stat("\(stage)/etc/autonomy/autonomy.json", &mode) == 0 && mode.st_mode & 0o777 == 0o640)

        // An operator's configuration is never replaced by a later install.
        try "{\"version\": 1}".write(toFile: "\(stage)/etc/autonomy/autonomy.json", atomically: true, encoding: .utf8)
        #expect(try shell(install).status == 0)
        #expect(
            try String(contentsOfFile: "\(stage)/etc/autonomy/autonomy.json", encoding: .utf8) == "{\"version\": 1}")

        // Uninstall takes back what install put there, and leaves the configuration.
        let uninstall = try shell("make --no-print-directory uninstall DESTDIR='\(stage)' PREFIX=/usr")
        #expect(uninstall.status == 0, "\(uninstall.output)")
        let left = try tree(stage).filter { !$0.hasSuffix("/") }
        #expect(left.contains("./etc/autonomy/autonomy.json"))
        #expect(
            !left.contains {
                $0.hasPrefix("./usr") && !FileManager.default.directoryExistsForTest(stage + $0.dropFirst())
            })
    }

    /// The users and folders the package declares, made by systemd's own tools in a scratch root.
    @Test(
        .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/systemd-sysusers") && geteuid() == 0))
    func sysusersAndTmpfilesMakeTheAccountsAndFolders() throws {
        let scratch = (NSTemporaryDirectory() as NSString).appendingPathComponent("root-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let made = try shell(
            """
            set -e
            mkdir -p '\(scratch)/etc/autonomy' '\(scratch)/usr/lib/sysusers.d' '\(scratch)/usr/lib/tmpfiles.d'
            cp systemd/sysusers.d/autonomy.conf '\(scratch)/usr/lib/sysusers.d/'
            cp systemd/tmpfiles.d/autonomy.conf '\(scratch)/usr/lib/tmpfiles.d/'
            touch '\(scratch)/etc/autonomy/autonomy.json'
            systemd-sysusers --root='\(scratch)'
            systemd-tmpfiles --create --root='\(scratch)' autonomy.conf
            """)
        #expect(made.status == 0, "\(made.output)")
        let passwd = try String(contentsOfFile: "\(scratch)/etc/passwd", encoding: .utf8)
        let group = try String(contentsOfFile: "\(scratch)/etc/group", encoding: .utf8)
        func id(_ line: String?, _ field: Int) -> UInt32? { line.flatMap { UInt32($0.split(separator: ":")[field]) } }
        let worker = passwd.split(separator: "\n").first { $0.hasPrefix("autonomy:") }.map(String.init)
        let web = passwd.split(separator: "\n").first { $0.hasPrefix("autonomy-web:") }.map(String.init)
        let workerGroup = group.split(separator: "\n").first { $0.hasPrefix("autonomy:") }.map(String.init)
        #expect(worker?.hasSuffix(":/var/lib/autonomy:/usr/sbin/nologin") == true)
        #expect(id(web, 3) == id(workerGroup, 2), "the web server's primary group is the worker's")
        #expect(group.contains("autonomy-producers:"))
        let expected: [(String, UInt16, UInt32?, UInt32?)] = [
            ("etc/autonomy", 0o750, 0, id(workerGroup, 2)),
            ("etc/autonomy/autonomy.json", 0o640, 0, id(workerGroup, 2)),
            ("etc/autonomy/web", 0o700, id(web, 2), id(workerGroup, 2)),
            ("var/lib/autonomy", 0o770, id(worker, 2), id(workerGroup, 2)),
            ("run/autonomy", 0o755, 0, 0),
        ]
        for (path, mode, owner, group) in expected {
            var info = stat()
            #expect(stat("\(scratch)/\(path)", &info) == 0, "\(path)")
            #expect(UInt16(info.st_mode & 0o7777) == mode, "\(path): \(String(info.st_mode & 0o7777, radix: 8))")
            #expect(info.st_uid == owner && info.st_gid == group, "\(path): \(info.st_uid):\(info.st_gid)")
        }
    }
}

extension FileManager {
    fileprivate func directoryExistsForTest(_ path: String) -> Bool {
        var folder: ObjCBool = false
        return fileExists(atPath: path, isDirectory: &folder) && folder.boolValue
    }
}
