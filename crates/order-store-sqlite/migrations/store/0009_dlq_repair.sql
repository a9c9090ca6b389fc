-- DLQ repair (issue #14).
--
-- `dlq_revisions`: edits of a consumer-side record's message. The record's
-- `original_event` is never changed; each revision keeps who wrote it, when,
-- why, the RFC 6902 patch from the revision it was based on, and the whole
-- resulting message. `state`: READY (replayable), AWAITING_APPROVAL (four
-- eyes: a second admin approves or rejects), APPROVED, REJECTED. The unique
-- key makes two editors racing for the same next number one winner.
CREATE TABLE dlq_revisions (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id     TEXT    NOT NULL,
    revision     INTEGER NOT NULL,
    based_on     INTEGER NOT NULL,
    author       TEXT    NOT NULL,
    reason       TEXT    NOT NULL,
    patch        TEXT    NOT NULL,
    payload      TEXT    NOT NULL,
    state        TEXT    NOT NULL
                 CHECK (state IN ('READY', 'AWAITING_APPROVAL', 'APPROVED', 'REJECTED')),
    created_at   TEXT    NOT NULL,
    reviewer     TEXT,
    reviewed_at  TEXT,
    review_note  TEXT,
    UNIQUE (event_id, revision)
);

-- The consumer group that dead-lettered a consumer-side record (from the
-- `kafka_dlt-original-consumer-group` header): a replay redelivers to it
-- alone. The customer of the order, when the message names it (search).
-- `imported_at`/`imported_by`: the record came from another environment's
-- export (`POST /api/dlq/import`).
ALTER TABLE dlq_replay_records ADD COLUMN consumer_group TEXT;
ALTER TABLE dlq_replay_records ADD COLUMN customer_id TEXT;
ALTER TABLE dlq_replay_records ADD COLUMN imported_at TEXT;
ALTER TABLE dlq_replay_records ADD COLUMN imported_by TEXT;

-- Search by customer and by event type, newest failure first (each index
-- ends with the rowid, the listings' tie-breaker).
CREATE INDEX idx_dlq_customer ON dlq_replay_records (customer_id, failure_time);
CREATE INDEX idx_dlq_event_type ON dlq_replay_records (event_type, failure_time);
