-- Bulk DLQ replay jobs (`POST /api/dlq/replay` without dryRun). A runner
-- works on a RUNNING job while it holds the lease (runner, lease_until);
-- another instance takes over a job whose lease lapsed.
CREATE TABLE dlq_replay_jobs (
    id          TEXT    PRIMARY KEY,
    principal   TEXT    NOT NULL,
    role        TEXT    NOT NULL,
    filter      TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    matched     INTEGER NOT NULL DEFAULT 0,
    processed   INTEGER NOT NULL DEFAULT 0,
    replayed    INTEGER NOT NULL DEFAULT 0,
    failed      INTEGER NOT NULL DEFAULT 0,
    skipped     INTEGER NOT NULL DEFAULT 0,
    published   INTEGER NOT NULL DEFAULT 0,
    message     TEXT,
    created_at  TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL,
    finished_at TEXT,
    runner      TEXT,
    lease_until TEXT
);

CREATE INDEX idx_replay_jobs_created ON dlq_replay_jobs (created_at, id);
CREATE INDEX idx_replay_jobs_status ON dlq_replay_jobs (status, created_at);
