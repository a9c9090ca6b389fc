-- The write side: event store (the auto-increment id is the global position),
-- current state, outbox, DLQ records and idempotency keys.
-- Timestamps are RFC 3339 UTC text with exactly 6 fractional digits and 'Z'
-- (e.g. 2024-05-01T10:00:00.123456Z): exact at microseconds and sortable as text.
-- Money is decimal text, never REAL.

CREATE TABLE event_store (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id       TEXT    NOT NULL UNIQUE,
    aggregate_id   TEXT    NOT NULL,
    aggregate_type TEXT    NOT NULL,
    event_type     TEXT    NOT NULL,
    event_data     TEXT    NOT NULL,
    version        INTEGER NOT NULL,
    schema_version INTEGER NOT NULL DEFAULT 1,
    occurred_on    TEXT    NOT NULL,
    correlation_id TEXT,
    causation_id   TEXT,
    UNIQUE (aggregate_id, version)
);

CREATE TABLE orders (
    id                  TEXT    PRIMARY KEY,
    customer_id         TEXT    NOT NULL,
    restaurant_id       TEXT    NOT NULL,
    total_amount        TEXT    NOT NULL,
    status              TEXT    NOT NULL,
    payment_id          TEXT,
    cancellation_reason TEXT,
    created_at          TEXT    NOT NULL,
    updated_at          TEXT    NOT NULL,
    version             INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE order_items (
    order_id     TEXT    NOT NULL,
    line_no      INTEGER NOT NULL,
    menu_item_id TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    price        TEXT    NOT NULL,
    quantity     INTEGER NOT NULL,
    PRIMARY KEY (order_id, line_no)
) WITHOUT ROWID;

CREATE TABLE outbox (
    position     INTEGER PRIMARY KEY,  -- event_store.id
    event_id     TEXT    NOT NULL,
    aggregate_id TEXT    NOT NULL,
    payload      TEXT    NOT NULL,     -- the full envelope JSON, as published
    created_at   TEXT    NOT NULL
);

CREATE TABLE idempotency_keys (
    key         TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    order_id    TEXT NOT NULL,
    created_at  TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE dlq_replay_records (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id            TEXT    NOT NULL UNIQUE,
    aggregate_id        TEXT    NOT NULL,
    event_type          TEXT    NOT NULL,
    original_event      TEXT    NOT NULL,
    failure_reason      TEXT    NOT NULL,
    failure_time        TEXT    NOT NULL,
    status              TEXT    NOT NULL DEFAULT 'PENDING'
                        CHECK (status IN ('PENDING', 'REPLAYED', 'FAILED', 'SKIPPED')),
    replay_attempt_time TEXT,
    replay_result       TEXT,
    replay_attempts     INTEGER NOT NULL DEFAULT 0,
    version             INTEGER,
    source              TEXT    NOT NULL CHECK (source IN ('PUBLISH', 'CONSUMER')),
    blocked_by          TEXT,
    topic               TEXT    NOT NULL,
    origin              TEXT
);

CREATE INDEX idx_dlq_status_failure_time ON dlq_replay_records (status, failure_time);
CREATE INDEX idx_dlq_failure_time ON dlq_replay_records (failure_time);
CREATE INDEX idx_dlq_aggregate ON dlq_replay_records (aggregate_id, status);
CREATE INDEX idx_dlq_blocked_by ON dlq_replay_records (blocked_by);
