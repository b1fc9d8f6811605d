PRAGMA foreign_keys=OFF;
BEGIN TRANSACTION;
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
INSERT INTO tasks VALUES(1,'report','queued',0,1795165200000,'{"period":"2026-11","to":"ops@example.com"}','b5eb25ca481d00d5140c4a60453b1c1d8e61bf2510db07cd687e21e6a7a5dbff',NULL,NULL,NULL,0,NULL,NULL,NULL,1795165200000,1795165200000,NULL,NULL,NULL,NULL,NULL,NULL);
INSERT INTO tasks VALUES(2,'report','done',0,1795165201000,'{"note":"café ✓","period":"2026-10"}','065273ab8c38fd3bb8eafdf7331740b76ccb2888a483af970a6688c4a16103dd',NULL,NULL,'October report',1,NULL,NULL,NULL,1795165201000,1795165210010,1795165210000,1795165210010,0,'{"ok":true}',NULL,NULL);
INSERT INTO tasks VALUES(3,'once','dead',0,1795165202000,'{"n":1,"ratio":0.5}','6bf5b246103c0ee495f7c0188a0bec31495e819b0bd4151eb1aede7364a72358',NULL,NULL,NULL,1,NULL,NULL,NULL,1795165202000,1795165220007,1795165220000,1795165220007,1,NULL,'the handler exited with status 1','boom');
INSERT INTO tasks VALUES(4,'report','cancelled',5,1795165203000,'{"period":"2026-12"}','fcaab7d55841e0ce17fcaf6f89fef3247ba9a0193e499eca7f543628bddf02f7','k-2026-12','cron','December report',0,NULL,NULL,NULL,1795165203000,1795165230000,NULL,1795165230000,NULL,NULL,'cancelled by elad: duplicate',NULL);
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
INSERT INTO ledger VALUES(1,1795165200000,1,'report','enqueued',NULL,NULL,NULL,'{"payload_sha256":"b5eb25ca481d00d5140c4a60453b1c1d8e61bf2510db07cd687e21e6a7a5dbff","source":null,"state":"queued"}','0000000000000000000000000000000000000000000000000000000000000000','960564dfd00fe6cef09a2402f9350e294fc6275fc041858169fd07ed89bd01dc');
INSERT INTO ledger VALUES(2,1795165201000,2,'report','enqueued',NULL,NULL,NULL,'{"payload_sha256":"065273ab8c38fd3bb8eafdf7331740b76ccb2888a483af970a6688c4a16103dd","source":null,"state":"queued"}','960564dfd00fe6cef09a2402f9350e294fc6275fc041858169fd07ed89bd01dc','b695d112301c42bdedfd48148d6de1e63e77c999b1409313b5216f2df7c9de78');
INSERT INTO ledger VALUES(3,1795165202000,3,'once','enqueued',NULL,NULL,NULL,'{"payload_sha256":"6bf5b246103c0ee495f7c0188a0bec31495e819b0bd4151eb1aede7364a72358","source":null,"state":"queued"}','b695d112301c42bdedfd48148d6de1e63e77c999b1409313b5216f2df7c9de78','563d91f7bf0fd405d6825f5cc176511020bdedaa94fe9536f017c2465bbc081a');
INSERT INTO ledger VALUES(4,1795165203000,4,'report','enqueued',NULL,NULL,NULL,'{"payload_sha256":"fcaab7d55841e0ce17fcaf6f89fef3247ba9a0193e499eca7f543628bddf02f7","source":"cron","state":"queued"}','563d91f7bf0fd405d6825f5cc176511020bdedaa94fe9536f017c2465bbc081a','b55230eb0e063edd66e9ecce39eec4c0af23c46adef069e7a1f3f350d6669a71');
INSERT INTO ledger VALUES(5,1795165210000,2,'report','claimed',1,NULL,NULL,'{"approval_id":null,"lease_expires_at":"2026-11-20T09:01:10Z"}','b55230eb0e063edd66e9ecce39eec4c0af23c46adef069e7a1f3f350d6669a71','de514bacae9a75deb79716ea9be29048556dbdbbfec02c0cb972b855623dd060');
INSERT INTO ledger VALUES(6,1795165210005,2,'report','executed',1,5,NULL,'{"exit_code":0,"stdout_bytes":11,"stdout_truncated":false}','de514bacae9a75deb79716ea9be29048556dbdbbfec02c0cb972b855623dd060','54974ef067a3cd920b23071be5ff4cf16c5fbed20d533559010e2af5386822c4');
INSERT INTO ledger VALUES(7,1795165210008,2,'report','llm_call',1,850,0.015625,'{"model":"small","tier":"paid"}','54974ef067a3cd920b23071be5ff4cf16c5fbed20d533559010e2af5386822c4','ce28e7b8bcf06f74029a5c5e58c3f2711fde646852a6b170ae12f7ec8dd202b4');
INSERT INTO ledger VALUES(8,1795165210010,2,'report','done',1,10,NULL,'{"evidence":"café ✓: exit 0"}','ce28e7b8bcf06f74029a5c5e58c3f2711fde646852a6b170ae12f7ec8dd202b4','1d253fe33c3010f4358b9abcb785d1ba5721e431c0a7d2350b94b4ed79ac01ce');
INSERT INTO ledger VALUES(9,1795165220000,3,'once','claimed',1,NULL,NULL,'{"approval_id":null,"lease_expires_at":"2026-11-20T09:01:20Z"}','1d253fe33c3010f4358b9abcb785d1ba5721e431c0a7d2350b94b4ed79ac01ce','b26b2a53c62679fbdc45e499424c38f2c2f0312a1a59c3797b83a6f3e662a6f5');
INSERT INTO ledger VALUES(10,1795165220007,3,'once','executed',1,7,NULL,'{"error":"the handler exited with status 1","exit_code":1,"stdout_bytes":0,"stdout_truncated":false}','b26b2a53c62679fbdc45e499424c38f2c2f0312a1a59c3797b83a6f3e662a6f5','5dac5dad5b197f5f9c83f68a0563ac4322d3d6fc7e8a73bd78983d1df160db91');
INSERT INTO ledger VALUES(11,1795165220007,3,'once','dead',1,NULL,NULL,'{"attempts":1,"error":"the handler exited with status 1"}','5dac5dad5b197f5f9c83f68a0563ac4322d3d6fc7e8a73bd78983d1df160db91','14880da93c125b67f4fdb1adc959b8f9adf893a05ca63ca12db8fef6417aa389');
INSERT INTO ledger VALUES(12,1795165230000,4,'report','cancelled',0,NULL,NULL,'{"by":"elad","from":"queued","reason":"duplicate"}','14880da93c125b67f4fdb1adc959b8f9adf893a05ca63ca12db8fef6417aa389','18f3b8f9df8a69ddd09ba0e736e7c758cc9427768275c43de8458ea7ad161803');
CREATE TABLE grdb_migrations (identifier TEXT NOT NULL PRIMARY KEY);
INSERT INTO grdb_migrations VALUES('v1-queue-and-ledger');
CREATE INDEX tasks_claim_order ON tasks (priority DESC, run_at, id) WHERE state = 'queued';
CREATE INDEX tasks_leases ON tasks (lease_expires_at) WHERE state IN ('running', 'verifying');
CREATE UNIQUE INDEX tasks_key ON tasks (idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE TRIGGER tasks_payload_immutable
BEFORE UPDATE OF payload, payload_sha256 ON tasks
WHEN (NEW.payload IS NOT OLD.payload OR NEW.payload_sha256 IS NOT OLD.payload_sha256)
  -- Retention may empty the payload of a finished task; nothing else may change it.
  AND NOT (NEW.payload = '' AND NEW.payload_sha256 IS OLD.payload_sha256
           AND OLD.state IN ('done', 'dead', 'cancelled', 'rejected', 'expired', 'blocked'))
BEGIN
    SELECT RAISE(ABORT, 'a task payload cannot change after enqueue');
END
;
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
COMMIT;
