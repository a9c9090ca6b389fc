-- DLQ repair (issue #14); see the SQLite migration of the same name for
-- what each table and column is for.
CREATE TABLE IF NOT EXISTS dlq_revisions (
    id           BIGINT       NOT NULL AUTO_INCREMENT,
    event_id     VARCHAR(255) NOT NULL,
    revision     INT          NOT NULL,
    based_on     INT          NOT NULL,
    author       VARCHAR(255) NOT NULL,
    reason       TEXT         NOT NULL,
    patch        MEDIUMTEXT   NOT NULL,
    payload      MEDIUMTEXT   NOT NULL,
    state        VARCHAR(20)  NOT NULL,
    created_at   DATETIME(6)  NOT NULL,
    reviewer     VARCHAR(255) NULL,
    reviewed_at  DATETIME(6)  NULL,
    review_note  TEXT         NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uk_dlq_revision (event_id, revision),
    CONSTRAINT ck_dlq_revision_state
        CHECK (state IN ('READY', 'AWAITING_APPROVAL', 'APPROVED', 'REJECTED'))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

ALTER TABLE dlq_replay_records
    ADD COLUMN consumer_group VARCHAR(255) NULL,
    ADD COLUMN customer_id VARCHAR(255) NULL,
    ADD COLUMN imported_at DATETIME(6) NULL,
    ADD COLUMN imported_by VARCHAR(255) NULL,
    ADD INDEX idx_dlq_customer (customer_id, failure_time),
    ADD INDEX idx_dlq_event_type (event_type, failure_time);
