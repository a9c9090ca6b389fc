-- The write side on MySQL 8 / MariaDB 10.11: event store (the auto-increment
-- id is the global position), current state, outbox, DLQ records,
-- idempotency keys and the relay lease. Append-only: never edit a released
-- migration, add 0002_… instead.
--
-- Every table is InnoDB, utf8mb4 with a binary collation (ids and keys
-- compare exactly, as on SQLite). Timestamps are DATETIME(6) in UTC
-- (microseconds kept exactly). Money is decimal text exactly as decided
-- ("12.50" stays "12.50"), never FLOAT; the event data keeps its own JSON
-- text untouched. Statements are separated by a semicolon at the end of a
-- line and are idempotent, because MySQL DDL is not transactional.

CREATE TABLE IF NOT EXISTS event_store (
    id             BIGINT       NOT NULL AUTO_INCREMENT,
    event_id       VARCHAR(36)  NOT NULL,
    aggregate_id   VARCHAR(64)  NOT NULL,
    aggregate_type VARCHAR(100) NOT NULL,
    event_type     VARCHAR(100) NOT NULL,
    event_data     MEDIUMTEXT   NOT NULL,
    version        INT          NOT NULL,
    schema_version INT          NOT NULL DEFAULT 1,
    occurred_on    DATETIME(6)  NOT NULL,
    correlation_id VARCHAR(255) NULL,
    causation_id   VARCHAR(255) NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uk_event_store_event_id (event_id),
    UNIQUE KEY uk_event_store_aggregate_version (aggregate_id, version)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS orders (
    id                  VARCHAR(64)  NOT NULL,
    customer_id         VARCHAR(255) NOT NULL,
    restaurant_id       VARCHAR(255) NOT NULL,
    total_amount        VARCHAR(40)  NOT NULL,
    status              VARCHAR(20)  NOT NULL,
    payment_id          VARCHAR(255) NULL,
    cancellation_reason TEXT         NULL,
    created_at          DATETIME(6)  NOT NULL,
    updated_at          DATETIME(6)  NOT NULL,
    version             INT          NOT NULL,
    PRIMARY KEY (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS order_items (
    order_id     VARCHAR(64)  NOT NULL,
    line_no      INT          NOT NULL,
    menu_item_id VARCHAR(255) NOT NULL,
    name         VARCHAR(255) NOT NULL,
    price        VARCHAR(40)  NOT NULL,
    quantity     INT          NOT NULL,
    PRIMARY KEY (order_id, line_no)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- One row per committed, not yet delivered (or parked) event.
CREATE TABLE IF NOT EXISTS outbox (
    position     BIGINT      NOT NULL,
    event_id     VARCHAR(36) NOT NULL,
    aggregate_id VARCHAR(64) NOT NULL,
    payload      MEDIUMTEXT  NOT NULL,
    created_at   DATETIME(6) NOT NULL,
    PRIMARY KEY (position)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS idempotency_keys (
    `key`       VARCHAR(255) NOT NULL,
    fingerprint VARCHAR(255) NOT NULL,
    order_id    VARCHAR(64)  NOT NULL,
    created_at  DATETIME(6)  NOT NULL,
    PRIMARY KEY (`key`)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- The original service's columns (replay_attempt_time now nullable: a
-- record never replayed has no attempt time) plus ours from `version` on.
CREATE TABLE IF NOT EXISTS dlq_replay_records (
    id                  BIGINT       NOT NULL AUTO_INCREMENT,
    event_id            VARCHAR(255) NOT NULL,
    aggregate_id        VARCHAR(255) NOT NULL,
    event_type          VARCHAR(255) NOT NULL,
    original_event      MEDIUMTEXT   NOT NULL,
    failure_reason      MEDIUMTEXT   NOT NULL,
    failure_time        DATETIME(6)  NOT NULL,
    status              VARCHAR(50)  NOT NULL DEFAULT 'PENDING',
    replay_attempt_time DATETIME(6)  NULL,
    replay_result       TEXT         NULL,
    replay_attempts     INT          NOT NULL DEFAULT 0,
    version             INT          NULL,
    source              VARCHAR(20)  NOT NULL,
    blocked_by          VARCHAR(255) NULL,
    topic               VARCHAR(255) NOT NULL,
    origin              VARCHAR(255) NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uk_dlq_event_id (event_id),
    KEY idx_dlq_status_failure_time (status, failure_time),
    KEY idx_dlq_failure_time (failure_time),
    KEY idx_dlq_aggregate (aggregate_id, status),
    KEY idx_dlq_blocked_by (blocked_by),
    CONSTRAINT ck_dlq_status CHECK (status IN ('PENDING', 'REPLAYED', 'FAILED', 'SKIPPED')),
    CONSTRAINT ck_dlq_source CHECK (source IN ('PUBLISH', 'CONSUMER'))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Which service instance may relay the outbox: `holder` (a random id made
-- at connect) until `expires_at` (UTC). Taken or renewed atomically by
-- every outbox fetch; another instance takes over once it expires.
CREATE TABLE IF NOT EXISTS relay_lease (
    name       VARCHAR(64)  NOT NULL,
    holder     VARCHAR(64)  NOT NULL,
    expires_at DATETIME(6)  NOT NULL,
    PRIMARY KEY (name)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

INSERT INTO relay_lease (name, holder, expires_at)
VALUES ('outbox', '', '2000-01-01 00:00:00.000000')
ON DUPLICATE KEY UPDATE name = name;
