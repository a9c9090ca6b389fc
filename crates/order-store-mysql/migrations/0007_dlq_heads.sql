-- Sequence heads as data (order_core::ports::DlqStore::heads): a head is an
-- unresolved record not held behind another (consumer-side records head
-- their own). `head_since` is its failure time while it heads a sequence and
-- NULL otherwise, computed by the database on every write of the row, so
-- "the next heads, oldest failure first" is one range scan of
-- idx_dlq_heads, whatever the size of the DLQ.
ALTER TABLE dlq_replay_records
    ADD COLUMN head_since DATETIME(6) AS (
        CASE WHEN status IN ('PENDING', 'FAILED') AND blocked_by IS NULL
             THEN failure_time END
    ) STORED,
    ADD INDEX idx_dlq_heads (head_since, id);
