-- Bulk DLQ replay jobs (`POST /api/dlq/replay` without dryRun). A runner
-- works on a RUNNING job while it holds the lease (runner, lease_until);
-- another instance takes over a job whose lease lapsed.
CREATE TABLE IF NOT EXISTS dlq_replay_jobs (
    id          CHAR(36)     NOT NULL,
    principal   VARCHAR(255) NOT NULL,
    role        VARCHAR(20)  NOT NULL,
    filter      MEDIUMTEXT   NOT NULL,
    status      VARCHAR(20)  NOT NULL,
    matched     BIGINT       NOT NULL DEFAULT 0,
    processed   BIGINT       NOT NULL DEFAULT 0,
    replayed    BIGINT       NOT NULL DEFAULT 0,
    failed      BIGINT       NOT NULL DEFAULT 0,
    skipped     BIGINT       NOT NULL DEFAULT 0,
    published   BIGINT       NOT NULL DEFAULT 0,
    message     TEXT         NULL,
    created_at  DATETIME(6)  NOT NULL,
    updated_at  DATETIME(6)  NOT NULL,
    finished_at DATETIME(6)  NULL,
    runner      VARCHAR(64)  NULL,
    lease_until DATETIME(6)  NULL,
    PRIMARY KEY (id),
    KEY idx_replay_jobs_created (created_at, id),
    KEY idx_replay_jobs_status (status, created_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
