-- DLQ counts without scanning the records (issue #11: a million parked
-- events). `dlq_counters` holds how many records there are per status,
-- held behind a head or not (`blocked_by IS NOT NULL`) and shard
-- (`id % 8`, as on MySQL, where it spreads concurrent writers over rows).
-- The triggers keep it in the transaction of every insert, status or hold
-- change and delete of a record (retention included), so no code path can
-- forget it; `GET /api/dlq/stats` and the listings' totals sum its rows.
-- The listings' keyset pages (`after=`) and the oldest unresolved failure
-- use the existing indexes `(status, failure_time)` and `(failure_time)`:
-- SQLite ends each with the rowid (`id`), the listings' tie-breaker.
CREATE TABLE dlq_counters (
    status TEXT    NOT NULL,
    held   INTEGER NOT NULL,
    shard  INTEGER NOT NULL,
    n      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (status, held, shard)
) WITHOUT ROWID;

-- Back-fill from the records there are, then a zero row for every other
-- combination, so the triggers only ever update.
INSERT INTO dlq_counters (status, held, shard, n)
SELECT status, blocked_by IS NOT NULL, id % 8, COUNT(*)
FROM dlq_replay_records
GROUP BY status, blocked_by IS NOT NULL, id % 8;

INSERT OR IGNORE INTO dlq_counters (status, held, shard, n)
SELECT s.status, h.held, k.shard, 0
FROM (SELECT 'PENDING' AS status UNION ALL SELECT 'REPLAYED'
      UNION ALL SELECT 'FAILED' UNION ALL SELECT 'SKIPPED') s,
     (SELECT 0 AS held UNION ALL SELECT 1) h,
     (SELECT 0 AS shard UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3
      UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7) k;

CREATE TRIGGER dlq_counters_insert AFTER INSERT ON dlq_replay_records
BEGIN
    UPDATE dlq_counters SET n = n + 1
    WHERE status = NEW.status AND held = (NEW.blocked_by IS NOT NULL) AND shard = NEW.id % 8;
END;

CREATE TRIGGER dlq_counters_delete AFTER DELETE ON dlq_replay_records
BEGIN
    UPDATE dlq_counters SET n = n - 1
    WHERE status = OLD.status AND held = (OLD.blocked_by IS NOT NULL) AND shard = OLD.id % 8;
END;

-- Replay claims and other column changes leave the counters alone.
CREATE TRIGGER dlq_counters_update AFTER UPDATE OF status, blocked_by ON dlq_replay_records
WHEN OLD.status IS NOT NEW.status
     OR (OLD.blocked_by IS NOT NULL) <> (NEW.blocked_by IS NOT NULL)
BEGIN
    UPDATE dlq_counters SET n = n - 1
    WHERE status = OLD.status AND held = (OLD.blocked_by IS NOT NULL) AND shard = OLD.id % 8;
    UPDATE dlq_counters SET n = n + 1
    WHERE status = NEW.status AND held = (NEW.blocked_by IS NOT NULL) AND shard = NEW.id % 8;
END;
