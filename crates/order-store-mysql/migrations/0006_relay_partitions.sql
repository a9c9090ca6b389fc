-- Relay partitions (order_core::ports::RelayLeases): every outbox row keeps
-- the bucket of its order (rows written before this migration get theirs
-- when a store connects), and the buckets are relayed by partition under
-- leases with fencing epochs, so several instances share the publishing.
-- The single `relay_lease` of earlier versions is no longer taken; a
-- partition is not claimed while an earlier version still holds it (rolling
-- upgrade: old instances keep relaying until they stop).
ALTER TABLE outbox ADD COLUMN bucket SMALLINT NOT NULL DEFAULT -1;

CREATE TABLE relay_partitions (
    partition_id INT         NOT NULL PRIMARY KEY,
    holder       VARCHAR(64) NOT NULL DEFAULT '',
    epoch        BIGINT      NOT NULL DEFAULT 0,
    expires_at   DATETIME(6) NOT NULL DEFAULT '2000-01-01 00:00:00'
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE relay_instances (
    instance   VARCHAR(64) NOT NULL PRIMARY KEY,
    expires_at DATETIME(6) NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
