import Foundation
import Testing

@testable import AutonomyCore

@Suite struct ConfigurationTests {
    @Test func durationsParseTheWayOperatorsWriteThem() {
        #expect(Interval(parsing: "30s")?.milliseconds == 30_000)
        #expect(Interval(parsing: "5m")?.milliseconds == 300_000)
        #expect(Interval(parsing: "24h")?.milliseconds == 86_400_000)
        #expect(Interval(parsing: "7d")?.milliseconds == 604_800_000)
        #expect(Interval(parsing: "1h30m")?.milliseconds == 5_400_000)
        #expect(Interval(parsing: "250ms")?.milliseconds == 250)
        #expect(Interval(parsing: "0")?.milliseconds == 0)
        for bad in ["", "30", "s", "5x", "-5m", "1.5h", "99999999999999999999d"] {
            #expect(Interval(parsing: bad) == nil, "\(bad) should not parse")
        }
        #expect(Interval(milliseconds: 192_000).description == "3m12s")
        #expect(Interval(parsing: " \t30s\u{3000}")?.milliseconds == 30_000)
        for bad in ["30s\n", "\u{2028}30s", "\u{85}5m"] {
            #expect(Interval(parsing: bad) == nil, "\(bad.debugDescription) should not parse")
        }
    }

    @Test func blanksAreTrimmedAsFoundationTrimsWhitespaces() {
        // Foundation is the oracle: every character it counts as a blank (the tab, the space
        // separators, the zero-width space) beside what it does not (line breaks, other format
        // characters, a combining mark after a blank).
        let blanks: [Unicode.Scalar] = (0...0x10FFFF).compactMap(Unicode.Scalar.init).filter {
            CharacterSet.whitespaces.contains($0)
        }
        #expect(blanks.count == 19, "the tab, the 17 space separators of Unicode and U+200B")
        let others: [String] = ["\n", "\r\n", "\u{85}", "\u{2028}", "\u{200C}", "\u{FEFF}", "\u{301}", "x", "30s", "é"]
        var texts: [String] = ["", " ", "  30s  ", "\t\u{A0}5m\u{202F}", " \u{301}5s "]
        for blank in blanks {
            for other in others {
                texts += ["\(blank)\(other)", "\(other)\(blank)", "\(blank)\(other)\(blank)\(blank)"]
            }
        }
        for text in texts {
            #expect(
                String(text.trimmingBlanks) == text.trimmingCharacters(in: .whitespaces), "\(text.debugDescription)")
        }
    }

    @Test func defaultsFillEveryOptionalKey() throws {
        let loaded = try loadMap(
            #"""
            {"version": 1, "task_types": {"t": {"handler": {"exec": {"argv": ["/bin/true"]}},
             "verify": [{"command": {"argv": ["/bin/true"]}}]}}}
            """#)
        let type = try #require(loaded.configuration.taskTypes["t"])
        #expect(type.safety == .dangerous)  // no rating means dangerous
        #expect(type.retry == RetryPolicy())
        #expect(loaded.configuration.worker.lease == .seconds(60))
        #expect(loaded.configuration.worker.drainMaxSeconds == 50)
        #expect(loaded.configuration.queue.maxPayloadBytes == 262_144)
        #expect(loaded.configuration.store.synchronous == .full)
        #expect(loaded.advice.contains { $0.contains("task_types.t.safety") })
    }

    @Test(arguments: [
        (
            #"{"version": 1, "task_types": {"send_email": {"handler": {"exec": {"argv": []}}}}}"#,
            "task_types.send_email.handler.exec.argv: expected a non-empty array"
        ),
        (
            #"{"version": 1, "task_types": {"a": {"handler": {"exec": {"argv": ["x"]}}, "retry": {"backoff": "soon"}}}}"#,
            "task_types.a.retry.backoff: expected a duration"
        ),
        (
            #"{"version": 1, "task_types": {"a": {"handler": {"exec": {"argv": ["x"]}}, "retry": {"max_attempts": 0}}}}"#,
            "task_types.a.retry.max_attempts: expected a whole number from 1 to 1000"
        ),
        (
            #"{"version": 1, "task_types": {"a": {"safety": "maybe", "handler": {"exec": {"argv": ["x"]}}}}}"#,
            #"task_types.a.safety: expected "safe" or "dangerous", got "maybe""#
        ),
        (
            #"{"version": 1, "store": {"synchronous": "off"}}"#,
            #"store.synchronous: expected "full" or "normal", got "off""#
        ),
        ("", "the file is empty"),
        (" \n", "the file is empty"),
        (#"{"version": 1, "task_types": {"a": {}}}"#, "task_types.a.handler: missing"),
        (#"{"version": 1, "worker": {"lease": 60}}"#, "worker.lease: expected a string"),
        (
            #"{"version": 1, "producers": {"users": {"bot": {"max_per_hour": -1}}}}"#,
            "producers.users.bot.max_per_hour: expected 0 to 10000000"
        ),
        (#"{"version": 1, "approvals": {"run_within": "10s"}}"#, "approvals.run_within: expected from"),
        (
            #"{"version": 1, "task_types": {"a": {"handler": {"exec": {"argv": ["x"], "pass_env": ["A=B"]}}}}}"#,
            "task_types.a.handler.exec.pass_env[0]: not a valid environment variable name"
        ),
        (#"{"version": 1, "timezone": "Mars/Olympus"}"#, "timezone: unknown time zone"),
        (#"{"version": 2}"#, "version: version 2 is not supported"),
        (#"{"task_types": {}}"#, "version: missing"),
        (#"{"version": 1, "components": [{"owner": "x"}]}"#, "components[0].name: missing required key"),
        (#"{"version": 1,"#, "not valid JSON"),
        // The document is read strictly before it is decoded (`ConfigValueDecoder`).
        (#"{"version": 1, "version": 1}"#, #"not valid JSON (duplicate key "version" at character"#),
        (#"{"version": 1, "task_types": []}"#, "task_types: expected an object"),
        (#"{"version": 1, "task_types": {"a": 5}}"#, "task_types.a: expected an object"),
        (
            #"{"version": 1, "task_types": {"a": {"handler": {"exec": {"argv": "x"}}}}}"#,
            "handler.exec.argv: expected an array"
        ),
        (#"{"version": 1, "task_types": {"a": {"handler": {"exec": {"argv": [1]}}}}}"#, "argv[0]: expected a string"),
        (
            #"{"version": 1, "producers": {"users": {"bot": {"max_per_hour": 2.5}}}}"#,
            "max_per_hour: expected a whole number"
        ),
        (
            #"{"version": 1, "producers": {"users": {"bot": {"max_per_hour": 1e30}}}}"#,
            "max_per_hour: 1e+30 is out of range"
        ),
        (
            #"{"version": 1, "timezone": 5}"#,
            "timezone: expected a string"
        ),
    ])
    func errorsNameTheKeyPath(json: String, expected: String) {
        #expect {
            _ = try loadMap(json)
        } throws: { error in
            "\(error)".contains(expected)
        }
    }

    @Test func nullIsAnAbsentKeyAndUnknownKeysOfNamedEntriesWarn() throws {
        let loaded = try loadMap(
            #"{"version": 1, "producers": {"users": {"bot": {"max_per_hour": null, "x": 1}}}, "worker": null}"#)
        #expect(loaded.configuration.producers.users["bot"] != nil)
        #expect(loaded.configuration.producers.users["bot"]?.maxPerHour == nil)
        #expect(loaded.configuration.worker.lease == WorkerSettings().lease)
        #expect(
            loaded.warnings.filter { $0.contains("unknown key") } == [
                "producers.users.bot.x: unknown key, ignored (check its spelling)"
            ])
    }

    @Test func aByteOrderMarkIsSkippedAndUTF16IsRefusedWithWhatToDo() throws {
        let json = #"{"version": 1, "timezone": "Europe/Berlin"}"#
        let marked = try ConfigLoader.parse(Data([0xEF, 0xBB, 0xBF] + Array(json.utf8)))
        #expect(marked.configuration.timezoneName == "Europe/Berlin")
        for encoding in [String.Encoding.utf16LittleEndian, .utf16BigEndian, .utf16, .utf32LittleEndian] {
            #expect {
                _ = try ConfigLoader.parse(try #require(json.data(using: encoding)))
            } throws: { error in
                "\(error)".contains("not UTF-8 (UTF-16 or UTF-32?): save it as UTF-8")
            }
        }
    }

    @Test func theFirstBadNameIsAlwaysTheSameOne() {
        // A dictionary's order changes from one process to the next: without the sorting, this
        // would report "b b" in about every other run.
        let handler = #"{"handler": {"exec": {"argv": ["x"]}}}"#
        #expect {
            _ = try loadMap(#"{"version": 1, "task_types": {"b b": \#(handler), "a a": \#(handler)}}"#)
        } throws: { error in
            "\(error)".contains("task_types.a a:")
        }
    }

    /// Hosts of one PostgreSQL queue compare this fingerprint: a byte-order mark, skipped when the
    /// file is read, must not make one host's map look different.
    @Test func aByteOrderMarkLeavesTheSharedMapFingerprintAsItWas() throws {
        let folder = try TemporaryFolder()
        let json = #"{"version": 1, "worker": {"host": "a"}, "task_types": {}}"#
        var fingerprints: [String] = []
        for (name, bytes) in [
            ("plain.json", Array(json.utf8)), ("marked.json", [0xEF, 0xBB, 0xBF] + Array(json.utf8)),
        ] {
            let path = folder.file(name)
            #expect(FileManager.default.createFile(atPath: path, contents: Data(bytes)))
            fingerprints.append(try ConfigLoader.parse(Data(bytes), file: path).sharedMapFingerprint)
        }
        #expect(fingerprints[0] == fingerprints[1])
    }

    @Test func aWholeNumberWrittenWithAFractionOfZeroIsAWholeNumber() throws {
        let loaded = try loadMap(
            #"{"version": 1, "producers": {"users": {"bot": {"max_per_hour": 5.0}, "b": {"max_per_hour": 7e1}}}}"#)
        #expect(loaded.configuration.producers.users["bot"]?.maxPerHour == 5)
        #expect(loaded.configuration.producers.users["b"]?.maxPerHour == 70)
    }

    @Test func unknownKeysWarnWithTheirPath() throws {
        let loaded = try loadMap(
            """
            {"version": 1, "wokrer": {}, "task_types": {"a": {"safety": "safe", "handler": {"exec": {"argv": ["x"], "tiemout": "5s"}}}}}
            """)
        #expect(loaded.warnings.contains("wokrer: unknown key, ignored (check its spelling)"))
        #expect(
            loaded.warnings.contains("task_types.a.handler.exec.tiemout: unknown key, ignored (check its spelling)"))
    }

    @Test func backoffGrowsByTheFactorUpToTheCapWithBoundedJitter() {
        var policy = RetryPolicy()
        policy.backoff = .seconds(30)
        policy.factor = 2
        policy.maxBackoff = .minutes(5)
        policy.jitter = 0
        #expect(policy.delay(afterAttempt: 1, unit: 0.9) == .seconds(30))
        #expect(policy.delay(afterAttempt: 2, unit: 0.9) == .seconds(60))
        #expect(policy.delay(afterAttempt: 3, unit: 0.9) == .seconds(120))
        #expect(policy.delay(afterAttempt: 10, unit: 0.9) == .minutes(5))
        policy.jitter = 0.1
        #expect(policy.delay(afterAttempt: 1, unit: 0) == .seconds(27))
        #expect(policy.delay(afterAttempt: 1, unit: 1) == .seconds(33))
    }

    @Test func databasePathPrecedenceIsFlagThenEnvironmentThenFileThenDefault() throws {
        var loaded = try loadMap(#"{"version": 1, "database": "data/queue.db"}"#)
        loaded.path = "/etc/autonomy/autonomy.json"
        #expect(
            ConfigLoader.databasePath(
                flag: "/x/flag.db", loaded: loaded, environment: ["AUTONOMY_DATABASE": "/x/env.db"]) == "/x/flag.db")
        #expect(
            ConfigLoader.databasePath(flag: nil, loaded: loaded, environment: ["AUTONOMY_DATABASE": "/x/env.db"])
                == "/x/env.db")
        #expect(ConfigLoader.databasePath(flag: nil, loaded: loaded, environment: [:]) == "/etc/autonomy/data/queue.db")
        loaded.configuration.database = nil
        #expect(ConfigLoader.databasePath(flag: nil, loaded: loaded, environment: [:]).hasSuffix("/autonomy.db"))
    }

    @Test func theExampleConfigurationLoadsWithoutWarnings() throws {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("config.example.json").path
        let loaded = try ConfigLoader.load(explicitPath: path)
        #expect(loaded.warnings.isEmpty, "\(loaded.warnings)")
        #expect(loaded.configuration.taskTypes.values.contains { $0.safety == .dangerous })
        #expect(loaded.configuration.taskTypes.values.contains { $0.safety == .safe })
        #expect(loaded.configuration.approvals.allowedSigners == "/etc/autonomy/allowed_signers")
        #expect(loaded.configuration.remediations["restart-ollama"]?.findings == [.tierWithoutModel])
        #expect(loaded.configuration.audit.cooldown == .days(7) && !loaded.configuration.audit.explain)
        let bot = try #require(loaded.configuration.producers.policy(user: "sales-bot", groups: []))
        #expect(bot.allows(type: "send_email") && !bot.allows(type: "daily_report"))
        #expect(
            loaded.configuration.producers.policy(user: "someone", groups: ["agents"])?.allows(type: "daily_report")
                == true)
    }
}

@Suite struct TimestampTests {
    /// The one writer of the format, against Foundation's formatter as an independent oracle: in UTC
    /// and in zones east and west (whole, half and quarter hours), on 5,000 random times from the year
    /// 1600 (the oracle's calendar is Julian before 1582) to 9999, and at 1970's edges.
    @Test func timesAreWrittenAsFoundationsFormatterWritesThem() throws {
        var times: [Int64] = [
            0, -1, 1, 999, 1_000, -1_000, -1_001, 1_796_115_600_000, 951_782_400_000, 4_107_542_399_999,
            253_402_300_799_999 - 86_400_000,
        ]
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<5_000 {
            times.append(Int64.random(in: -11_676_096_000_000...253_402_214_400_000, using: &generator))
        }
        let zones = try ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Asia/Kathmandu"].map {
            try #require(TimeZone(identifier: $0))
        }
        for zone in zones {
            let oracle = DateFormatter()
            oracle.locale = Locale(identifier: "en_US_POSIX")
            oracle.calendar = Calendar(identifier: .gregorian)
            oracle.timeZone = zone
            oracle.dateFormat = "yyyy-MM-dd'T'HH:mm:ssXXXXX"
            // Before time zones were standard, zones were hours, minutes and seconds off UTC (Berlin
            // +00:53:28): an offset is written in minutes, so zones are tried from 1970 on.
            for time in times where zone.identifier == "UTC" || time >= 0 {
                let date = Date(timeIntervalSince1970: Double(time.floorDivided(by: 1000)))
                #expect(
                    Timestamp.format(time, timeZone: zone) == oracle.string(from: date), "\(time) \(zone.identifier)")
                if zone.identifier == "UTC" {
                    #expect(Timestamp.format(time) == oracle.string(from: date), "\(time)")
                }
            }
        }
        // Years outside 1000-9999 are written as their number, unpadded, in the proleptic Gregorian
        // calendar (expected texts from Howard Hinnant's days-to-civil algorithm, worked by hand).
        #expect(Timestamp.format(253_402_300_799_999) == "9999-12-31T23:59:59Z")
        #expect(Timestamp.format(253_402_300_800_000) == "10000-01-01T00:00:00Z")
        #expect(Timestamp.format(-30_610_224_000_000) == "1000-01-01T00:00:00Z")
        #expect(Timestamp.format(-30_610_224_000_001) == "999-12-31T23:59:59Z")
        #expect(Timestamp.format(-62_198_755_200_000) == "-1-01-01T00:00:00Z")
        #expect(Timestamp.format(.max) == "292278994-08-17T07:12:55Z")
        #expect(Timestamp.format(.max - 1) == "292278994-08-17T07:12:55Z")
        #expect(Timestamp.format(.min) == "-292275055-05-16T16:47:04Z")
        #expect(Timestamp.format(.min + 1) == "-292275055-05-16T16:47:04Z")
    }

    @Test func formatsAndParsesISO8601() throws {
        #expect(Timestamp.format(1_796_115_600_000) == "2026-12-01T09:00:00Z")
        #expect(Timestamp.format(1_796_115_600_999) == "2026-12-01T09:00:00Z")
        #expect(Timestamp.format(-1) == "1969-12-31T23:59:59Z")
        let berlin = try #require(TimeZone(identifier: "Europe/Berlin"))
        #expect(Timestamp.format(1_796_115_600_000, timeZone: berlin) == "2026-12-01T10:00:00+01:00")
        #expect(Timestamp.parse("2026-12-01T09:00:00Z") == 1_796_115_600_000)
        #expect(Timestamp.parse("2026-12-01T10:00:00+01:00") == 1_796_115_600_000)
        #expect(Timestamp.parse("2026-12-01T09:00:00.250Z") == 1_796_115_600_250)
        #expect(Timestamp.parse("tomorrow") == nil)
    }
}

@Suite struct HostSettingsTests {
    static let map = """
        {
          "version": 1,
          "worker": { "tags": ["gpu"], "host": "gpu-box" },
          "store": { "password_env": "AUTONOMY_PG_PASSWORD" },
          "task_types": {
            "summarise": { "safety": "safe", "handler": { "exec": { "argv": ["/bin/true"] } }, "run_on": ["gpu"] },
            "reply": { "safety": "safe", "handler": { "exec": { "argv": ["/bin/true"] } } },
            "train": { "safety": "safe", "handler": { "exec": { "argv": ["/bin/true"] } }, "run_on": ["gpu", "big"] }
          }
        }
        """

    @Test func aHostClaimsTheTypesItsTagsAndListAllow() throws {
        var loaded = try loadMap(Self.map)
        #expect(loaded.configuration.worker.hostName == "gpu-box")
        #expect(loaded.configuration.store.passwordEnv == "AUTONOMY_PG_PASSWORD")
        #expect(loaded.configuration.secretVariableNames.isSuperset(of: ["AUTONOMY_PG_PASSWORD", "PGPASSWORD"]))
        // Untagged types run anywhere; "train" needs a tag this host lacks, and the loader says so.
        #expect(loaded.configuration.typesRunElsewhere == ["train"])
        #expect(loaded.advice.contains { $0.hasPrefix("task_types.train.run_on: this host lacks the tags [\"big\"]") })
        // With worker.types, the rest (heal's proposals too) are left to other hosts.
        loaded.configuration.worker.types = ["summarise", "train"]
        #expect(loaded.configuration.typesRunElsewhere == ["apply_remediation", "reply", "train"])
        #expect(loaded.configuration.skippedTypes == ["apply_remediation", "reply", "train"])
        // A map without run_on or worker.types: nothing is left to others, nothing skipped.
        #expect(try loadMap(standardMap).configuration.skippedTypes.isEmpty)
    }

    @Test(arguments: [
        (#""worker": {"types": []}"#, "worker.types"),
        (#""worker": {"host": ""}"#, "worker.host"),
        (#""store": {"password_env": "A=B"}"#, "store.password_env"),
    ])
    func aBadHostSettingIsRefusedByName(section: String, path: String) {
        #expect {
            _ = try loadMap(#"{"version": 1, \#(section)}"#)
        } throws: { error in
            "\(error)".hasPrefix(path)
        }
    }
}
