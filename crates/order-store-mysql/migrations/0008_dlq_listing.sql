-- DLQ counts without scanning the records (issue #11: a million parked
-- events). `dlq_counters` holds how many records there are per status,
-- held behind a head or not (`blocked_by IS NOT NULL`) and shard
-- (`id % 8`: concurrent writers update one of eight rows, not one hot
-- row). The triggers keep it in the transaction of every insert, status or
-- hold change and delete of a record (retention included), so no code path
-- can forget it; `GET /api/dlq/stats` and the listings' totals sum its rows.
-- The listings' keyset pages (`after=`) and the oldest unresolved failure
-- use the existing indexes `(status, failure_time)` and `(failure_time)`:
-- InnoDB ends each secondary index with the primary key (`id`), the
-- listings' tie-breaker.
--
-- The triggers are created before the back-fill: a record written while
-- this runs (another instance during a rolling upgrade) is counted by the
-- back-fill's locking read, and its trigger found no counter row to
-- update. Creating triggers needs the TRIGGER privilege (and, with binary
-- logging, SUPER or log_bin_trust_function_creators on MySQL).
-- A `CREATE TRIGGER … BEGIN … END;` block is one statement to the
-- migration runner: it ends at the line `END;`.
CREATE TABLE IF NOT EXISTS dlq_counters (
    status VARCHAR(50) NOT NULL,
    held   TINYINT     NOT NULL,
    shard  TINYINT     NOT NULL,
    n      BIGINT      NOT NULL DEFAULT 0,
    PRIMARY KEY (status, held, shard)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

DROP TRIGGER IF EXISTS dlq_counters_insert;

CREATE TRIGGER dlq_counters_insert AFTER INSERT ON dlq_replay_records FOR EACH ROW
    UPDATE dlq_counters SET n = n + 1
    WHERE status = NEW.status AND held = (NEW.blocked_by IS NOT NULL) AND shard = NEW.id % 8;

DROP TRIGGER IF EXISTS dlq_counters_delete;

CREATE TRIGGER dlq_counters_delete AFTER DELETE ON dlq_replay_records FOR EACH ROW
    UPDATE dlq_counters SET n = n - 1
    WHERE status = OLD.status AND held = (OLD.blocked_by IS NOT NULL) AND shard = OLD.id % 8;

DROP TRIGGER IF EXISTS dlq_counters_update;

-- Replay claims and other column changes leave the counters alone.
CREATE TRIGGER dlq_counters_update AFTER UPDATE ON dlq_replay_records FOR EACH ROW
BEGIN
    IF NOT (OLD.status <=> NEW.status)
       OR (OLD.blocked_by IS NOT NULL) <> (NEW.blocked_by IS NOT NULL) THEN
        UPDATE dlq_counters SET n = n - 1
        WHERE status = OLD.status AND held = (OLD.blocked_by IS NOT NULL) AND shard = OLD.id % 8;
        UPDATE dlq_counters SET n = n + 1
        WHERE status = NEW.status AND held = (NEW.blocked_by IS NOT NULL) AND shard = NEW.id % 8;
    END IF;
END;

-- Back-fill from the records there are (replacing whatever a half-applied
-- earlier run left), then a zero row for every other combination, so the
-- triggers only ever update.
DELETE FROM dlq_counters;

INSERT INTO dlq_counters (status, held, shard, n)
SELECT status, blocked_by IS NOT NULL, id % 8, COUNT(*)
FROM dlq_replay_records
GROUP BY status, blocked_by IS NOT NULL, id % 8;

INSERT IGNORE INTO dlq_counters (status, held, shard, n)
SELECT s.status, h.held, k.shard, 0
FROM (SELECT 'PENDING' AS status UNION ALL SELECT 'REPLAYED'
      UNION ALL SELECT 'FAILED' UNION ALL SELECT 'SKIPPED') s
CROSS JOIN (SELECT 0 AS held UNION ALL SELECT 1) h
CROSS JOIN (SELECT 0 AS shard UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3
      UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7) k;
