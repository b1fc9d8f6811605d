import Foundation

extension Doctor {
    /// The same checks on a PostgreSQL database: the connection (with the password from where the
    /// configuration says) and the schema in place of the file and its folder, then what the
    /// database says, measured against its clock. It only reads: no migration runs.
    public func examine(postgres url: PostgresURL) async -> [DoctorCheck] {
        var checks = [configuration()]
        let configuration = try? loaded.get().configuration
        let (database, store) = await connect(url, configuration)
        checks.append(database)
        checks.append(worker())
        checks.append(contentsOf: units())
        var readings: DoctorReadings?
        if let store, let configuration {
            do {
                readings = try await store.doctorReadings(
                    configuration: configuration, recentLedgerRows: recentLedgerRows,
                    fingerprint: try? loaded.get().sharedMapFingerprint)
            } catch {
                checks.append(DoctorCheck("database", .fail, "cannot read it: \(error)", fix: "autonomy status"))
            }
        }
        await store?.close()
        return checks + fromReadings(readings, configuration, databaseRead: store != nil)
    }

    /// What to do when this shell has no password, or not the role's.
    private var passwordFix: String {
        "give this shell the role's password: the variable store.password_env names, PGPASSWORD, or a 0600 ~/.pgpass line (sudo drops variables: `sudo -u \(workerUser) env PGPASSWORD=… autonomy doctor`, or the worker's ~/.pgpass)"
    }

    /// Connects and looks at the schema; the store is handed back only when its schema is current.
    private func connect(_ url: PostgresURL, _ configuration: Configuration?) async -> (DoctorCheck, PostgresStore?) {
        let password: String?
        do {
            password = try url.password(variable: configuration?.store.passwordEnv)
        } catch {
            return (
                DoctorCheck(
                    "database", .fail, error.description,
                    fix:
                        passwordFix
                ), nil
            )
        }
        let store: PostgresStore
        do {
            store = try await PostgresStore.open(
                url, password: password, host: configuration?.worker.hostName ?? ProcessInfo.processInfo.hostName,
                migrate: false)
        } catch {
            return (
                DoctorCheck(
                    "database", .fail, "\(error)",
                    fix: password == nil
                        ? passwordFix
                        : "is the server up and reachable from here? Check the role's password, and that pg_hba.conf lets this host in"
                ), nil
            )
        }
        do {
            let (applied, known) = try await store.schema()
            let transport = url.tls == .disable ? "plain TCP (sslmode=disable)" : "TLS (sslmode=\(url.tls.rawValue))"
            if !applied.isSubset(of: known) {
                await store.close()
                return (
                    DoctorCheck(
                        "database", .fail,
                        "\(url) was migrated by a newer autonomy (schema \(applied.subtracting(known).sorted().joined(separator: ", ")))",
                        fix: "install that newer autonomy on this host too; this one must not write to the database"),
                    nil
                )
            }
            if applied != known {
                await store.close()
                return (
                    DoctorCheck(
                        "database", .warn,
                        "schema behind this autonomy: \(known.subtracting(applied).count) migration(s) pending",
                        fix: "the next `autonomy work-once` on any host applies them (under an advisory lock)"),
                    nil
                )
            }
            let altered = try await store.alteredPayloads()
            if !altered.isEmpty { return (Self.alteredCheck(altered), store) }
            return (DoctorCheck("database", .ok, "\(url): reachable over \(transport), schema current"), store)
        } catch {
            await store.close()
            return (DoctorCheck("database", .fail, "cannot read \(url): \(error)", fix: "autonomy status"), nil)
        }
    }
}
