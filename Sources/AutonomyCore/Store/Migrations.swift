import GRDB

/// The schema's history. A migration is never edited once it has landed: a change is a new one.
/// Migrations name tables by string, never by app types, so old ones keep meaning what they meant.
enum Migrations {
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1-queue-and-ledger") { db in
            try db.execute(
                sql: """
                    CREATE TABLE tasks (
                        id INTEGER PRIMARY KEY,
                        type TEXT NOT NULL,
                        state TEXT NOT NULL,
                        priority INTEGER NOT NULL DEFAULT 0,
                        run_at INTEGER NOT NULL,
                        payload TEXT NOT NULL,
                        payload_sha256 TEXT NOT NULL,
                        idempotency_key TEXT,
                        source TEXT,
                        subject TEXT,
                        attempts INTEGER NOT NULL DEFAULT 0,
                        max_attempts INTEGER,
                        lease_token TEXT,
                        lease_expires_at INTEGER,
                        created_at INTEGER NOT NULL,
                        updated_at INTEGER NOT NULL,
                        started_at INTEGER,
                        finished_at INTEGER,
                        exit_code INTEGER,
                        result TEXT,
                        last_error TEXT,
                        stderr_tail TEXT
                    );
                    -- The claim walks this index in claim order and stops at the first runnable row.
                    CREATE INDEX tasks_claim_order ON tasks (priority DESC, run_at, id) WHERE state = 'queued';
                    CREATE INDEX tasks_leases ON tasks (lease_expires_at) WHERE state IN ('running', 'verifying');
                    -- Only keyed tasks pay for the key's index.
                    CREATE UNIQUE INDEX tasks_key ON tasks (idempotency_key) WHERE idempotency_key IS NOT NULL;

                    CREATE TRIGGER tasks_payload_immutable
                    BEFORE UPDATE OF payload, payload_sha256 ON tasks
                    WHEN (NEW.payload IS NOT OLD.payload OR NEW.payload_sha256 IS NOT OLD.payload_sha256)
                      -- Retention may empty the payload of a finished task; nothing else may change it.
                      AND NOT (NEW.payload = '' AND NEW.payload_sha256 IS OLD.payload_sha256
                               AND OLD.state IN ('done', 'dead', 'cancelled', 'rejected', 'expired', 'blocked'))
                    BEGIN
                        SELECT RAISE(ABORT, 'a task payload cannot change after enqueue');
                    END;

                    CREATE TABLE ledger (
                        id INTEGER PRIMARY KEY,
                        at INTEGER NOT NULL,
                        task_id INTEGER,
                        type TEXT,
                        event TEXT NOT NULL,
                        attempt INTEGER,
                        duration_ms INTEGER,
                        cost_usd REAL,
                        detail TEXT,
                        -- A hash chain: each row carries the previous row's hash and its own.
                        prev_hash TEXT NOT NULL,
                        hash TEXT NOT NULL
                    );
                    CREATE INDEX ledger_task ON ledger (task_id, id);
                    CREATE INDEX ledger_type_event ON ledger (type, event, at);

                    CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger
                    BEGIN
                        SELECT RAISE(ABORT, 'the ledger is append-only');
                    END;
                    CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger
                    BEGIN
                        SELECT RAISE(ABORT, 'the ledger is append-only');
                    END;
                    """)
        }
        migrator.registerMigration("v2-approvals-and-notifications") { db in
            try db.execute(
                sql: """
                    CREATE TABLE approvals (
                        id INTEGER PRIMARY KEY,
                        task_id INTEGER NOT NULL REFERENCES tasks(id),
                        payload_sha256 TEXT NOT NULL,
                        state TEXT NOT NULL,
                        reason TEXT NOT NULL,
                        requested_at INTEGER NOT NULL,
                        expires_at INTEGER NOT NULL,
                        decided_at INTEGER,
                        decided_by TEXT,
                        decision_note TEXT,
                        channel TEXT,
                        used_at INTEGER
                    );
                    CREATE INDEX approvals_task ON approvals (task_id, id);
                    CREATE INDEX approvals_pending ON approvals (expires_at) WHERE state = 'pending';
                    -- One-click tokens: only their SHA-256. One per alert delivered, so every link sent
                    -- stays valid until the request is decided, expires or is replaced; then all go.
                    CREATE TABLE approval_tokens (
                        token_sha256 TEXT PRIMARY KEY,
                        approval_id INTEGER NOT NULL REFERENCES approvals(id),
                        issued_at INTEGER NOT NULL
                    );
                    CREATE INDEX approval_tokens_approval ON approval_tokens (approval_id);

                    CREATE TABLE notifications (
                        id INTEGER PRIMARY KEY,
                        event TEXT NOT NULL,
                        channel TEXT NOT NULL,
                        task_id INTEGER,
                        approval_id INTEGER,
                        created_at INTEGER NOT NULL,
                        attempts INTEGER NOT NULL DEFAULT 0,
                        next_attempt_at INTEGER NOT NULL,
                        delivered_at INTEGER,
                        last_error TEXT
                    );
                    CREATE INDEX notifications_due ON notifications (next_attempt_at) WHERE delivered_at IS NULL;
                    """)
        }
        migrator.registerMigration("v3-model-gateway") { db in
            try db.execute(
                sql: """
                    -- One row per model call: a reservation of its worst-case cost, then settled at its
                    -- real cost, or released when the call failed or its process died.
                    CREATE TABLE llm_calls (
                        id INTEGER PRIMARY KEY,
                        task_id INTEGER,
                        model TEXT NOT NULL,
                        tier TEXT NOT NULL,
                        state TEXT NOT NULL,
                        reserved_usd REAL NOT NULL,
                        cost_usd REAL NOT NULL DEFAULT 0,
                        input_tokens INTEGER,
                        output_tokens INTEGER,
                        latency_ms INTEGER,
                        outcome TEXT,
                        started_at INTEGER NOT NULL,
                        expires_at INTEGER NOT NULL,
                        finished_at INTEGER
                    );
                    CREATE INDEX llm_calls_started ON llm_calls (started_at);
                    CREATE INDEX llm_calls_open ON llm_calls (expires_at) WHERE state = 'reserved';
                    CREATE INDEX llm_calls_task ON llm_calls (task_id, id);
                    """)
        }
        migrator.registerMigration("v4-roles-and-trust") { db in
            try db.execute(
                sql: """
                    -- A decision is a statement signed by an operator (SSHSIG); the key itself is never stored.
                    ALTER TABLE approvals ADD COLUMN statement TEXT;
                    ALTER TABLE approvals ADD COLUMN signature TEXT;
                    ALTER TABLE approvals ADD COLUMN signer_key TEXT;
                    -- An idempotency key is its producer's own: one producer can neither take another's key
                    -- nor learn through it that another's task exists.
                    DROP INDEX tasks_key;
                    CREATE UNIQUE INDEX tasks_key ON tasks (idempotency_key, ifnull(source, ''))
                        WHERE idempotency_key IS NOT NULL;
                    -- Producers' hourly limits count their tasks and the approval requests they caused.
                    CREATE INDEX tasks_source ON tasks (source, created_at) WHERE source IS NOT NULL;
                    CREATE INDEX approvals_requested ON approvals (requested_at);

                    -- Free text a row would otherwise carry for ever (a handler's error, a verifier's
                    -- evidence): the chained row keeps its length and SHA-256, this table the text,
                    -- and prune empties it with its task.
                    CREATE TABLE ledger_notes (
                        ledger_id INTEGER NOT NULL,
                        field TEXT NOT NULL,
                        task_id INTEGER,
                        text TEXT NOT NULL,
                        PRIMARY KEY (ledger_id, field)
                    ) WITHOUT ROWID;
                    CREATE INDEX ledger_notes_task ON ledger_notes (task_id);

                    -- An approval is bound to the type as much as to the payload: neither may change.
                    DROP TRIGGER tasks_payload_immutable;
                    CREATE TRIGGER tasks_immutable
                    BEFORE UPDATE OF type, payload, payload_sha256 ON tasks
                    WHEN (NEW.type IS NOT OLD.type OR NEW.payload IS NOT OLD.payload
                          OR NEW.payload_sha256 IS NOT OLD.payload_sha256)
                      -- Retention may empty the payload of a finished task; nothing else may change.
                      AND NOT (NEW.type IS OLD.type AND NEW.payload = '' AND NEW.payload_sha256 IS OLD.payload_sha256
                               AND OLD.state IN ('done', 'dead', 'cancelled', 'rejected', 'expired', 'blocked'))
                    BEGIN
                        SELECT RAISE(ABORT, 'a task''s type and payload cannot change after enqueue');
                    END;
                    """)
        }
        migrator.registerMigration("v5-oracle") { db in
            try db.execute(
                sql: """
                    -- One row per `autonomy audit`: its window and headline, so the next audit, the map
                    -- and the dashboard can show the trend.
                    CREATE TABLE audit_runs (
                        id INTEGER PRIMARY KEY,
                        at INTEGER NOT NULL,
                        window_start INTEGER NOT NULL,
                        window_end INTEGER NOT NULL,
                        headline TEXT NOT NULL,
                        worst TEXT
                    );
                    -- What an audit found: a kind, a severity, what it is about, and its evidence
                    -- (canonical JSON: numbers, signatures, task ids; never a payload).
                    CREATE TABLE findings (
                        id INTEGER PRIMARY KEY,
                        run_id INTEGER NOT NULL REFERENCES audit_runs (id),
                        kind TEXT NOT NULL,
                        severity TEXT NOT NULL,
                        subject TEXT,
                        title TEXT NOT NULL,
                        evidence TEXT NOT NULL
                    );
                    CREATE INDEX findings_run ON findings (run_id);
                    CREATE INDEX findings_kind ON findings (kind, subject);
                    """)
        }
        migrator.registerMigration("v6-proposals-and-overrides") { db in
            try db.execute(
                sql: """
                    -- A fix proposal is an apply_remediation task; this row ties it to the finding it
                    -- answers. `key` (finding kind, subject, action, target) keeps audits from
                    -- proposing what is still open, or was rejected within the cooldown.
                    CREATE TABLE proposals (
                        task_id INTEGER PRIMARY KEY REFERENCES tasks (id),
                        key TEXT NOT NULL,
                        action TEXT NOT NULL,
                        run_id INTEGER NOT NULL REFERENCES audit_runs (id),
                        finding_id INTEGER NOT NULL REFERENCES findings (id)
                    );
                    CREATE INDEX proposals_key ON proposals (key);
                    CREATE INDEX proposals_run ON proposals (run_id);
                    -- Runtime adjustments an approved proposal made, applied by the worker on top of
                    -- the configuration (which is never rewritten). Ended rows stay, with who ended them.
                    CREATE TABLE overrides (
                        id INTEGER PRIMARY KEY,
                        kind TEXT NOT NULL CHECK (kind IN ('pause', 'timeout', 'lease', 'max_attempts')),
                        type TEXT,
                        value INTEGER,
                        reason TEXT NOT NULL,
                        task_id INTEGER REFERENCES tasks (id),
                        created_at INTEGER NOT NULL,
                        expires_at INTEGER,
                        removed_at INTEGER,
                        removed_by TEXT
                    );
                    CREATE INDEX overrides_active ON overrides (id) WHERE removed_at IS NULL;
                    -- audit.explain's plain-language summary of the run, or why there is none.
                    ALTER TABLE audit_runs ADD COLUMN explanation TEXT;
                    """)
        }
        migrator.registerMigration("v7-heal") { db in
            try db.execute(
                sql: """
                    -- One row per fix proposal a worker claimed: the action, what it acts on, whether it
                    -- ran without a human (heal.auto_apply), and how heal judged it after settling.
                    CREATE TABLE heal_actions (
                        task_id INTEGER PRIMARY KEY REFERENCES tasks (id),
                        key TEXT NOT NULL,
                        target TEXT NOT NULL,
                        action TEXT NOT NULL,
                        automatic INTEGER NOT NULL CHECK (automatic IN (0, 1)),
                        applied_at INTEGER NOT NULL,
                        outcome TEXT CHECK (outcome IN ('fixed', 'did_not_fix', 'failed', 'no_evidence')),
                        judged_at INTEGER,
                        reason TEXT
                    );
                    CREATE INDEX heal_actions_recent ON heal_actions (automatic, applied_at);
                    CREATE INDEX heal_actions_key ON heal_actions (key, applied_at);
                    CREATE INDEX heal_actions_target ON heal_actions (target, judged_at);
                    -- Automatic fixes on a target stop while its breaker is open: until closes_at, or
                    -- until an operator closes it (`heal reset`).
                    CREATE TABLE heal_breakers (
                        id INTEGER PRIMARY KEY,
                        target TEXT NOT NULL,
                        opened_at INTEGER NOT NULL,
                        closes_at INTEGER NOT NULL,
                        reason TEXT NOT NULL,
                        closed_at INTEGER,
                        closed_by TEXT
                    );
                    CREATE INDEX heal_breakers_target ON heal_breakers (target, opened_at);
                    -- A heal cycle that proposed fixes saves its findings as a run of its own, apart
                    -- from the weekly audit's reports.
                    ALTER TABLE audit_runs ADD COLUMN source TEXT NOT NULL DEFAULT 'audit';
                    -- While a row has no ended_at, too many types fail at once: nothing automatic runs.
                    CREATE TABLE heal_stops (
                        id INTEGER PRIMARY KEY,
                        started_at INTEGER NOT NULL,
                        reason TEXT NOT NULL,
                        ended_at INTEGER
                    );
                    """)
        }
        migrator.registerMigration("v8-producer-tokens-and-sessions") { db in
            try db.execute(
                sql: """
                    -- Bearer tokens of remote producers (`autonomy producer token NAME`): only the
                    -- SHA-256 of each is kept; the secret was shown once.
                    CREATE TABLE producer_tokens (
                        id INTEGER PRIMARY KEY,
                        name TEXT NOT NULL,
                        token_sha256 TEXT NOT NULL UNIQUE,
                        created_at INTEGER NOT NULL,
                        revoked_at INTEGER
                    );
                    -- Operators' web sessions: the one-time login link's hash, then the cookie's.
                    CREATE TABLE operator_sessions (
                        id INTEGER PRIMARY KEY,
                        operator TEXT NOT NULL,
                        login_sha256 TEXT NOT NULL UNIQUE,
                        session_sha256 TEXT UNIQUE,
                        created_at INTEGER NOT NULL,
                        opened_at INTEGER,
                        expires_at INTEGER NOT NULL,
                        revoked_at INTEGER
                    );
                    """)
        }
        migrator.registerMigration("v9-link-channels-and-subjects") { db in
            try db.execute(
                sql: """
                    -- Which alert carried a one-click link, so that its decision names who it went to.
                    -- A decided request keeps its links' hashes: they now only show the decision.
                    ALTER TABLE approval_tokens ADD COLUMN issued_via TEXT;
                    -- Who asked for what (autonomy sources, subjects, subject; the dashboard): a
                    -- subject's tasks in time order, and both summaries read from the index alone.
                    CREATE INDEX tasks_subject ON tasks (subject, created_at, state, type, updated_at)
                        WHERE subject IS NOT NULL;
                    CREATE INDEX tasks_source_state ON tasks (source, state, updated_at) WHERE source IS NOT NULL;
                    """)
        }
        return migrator
    }
}
