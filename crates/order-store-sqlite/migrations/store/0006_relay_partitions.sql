-- Relay partitions (order_core::ports::RelayLeases): every outbox row keeps
-- the bucket of its order (rows written before this migration get theirs
-- when the store is opened), and the buckets are relayed by partition under
-- leases with fencing epochs. Times are the database clock in unix ms.
ALTER TABLE outbox ADD COLUMN bucket INTEGER NOT NULL DEFAULT -1;

CREATE TABLE relay_partitions (
    partition_id INTEGER PRIMARY KEY,
    holder       TEXT    NOT NULL DEFAULT '',
    epoch        INTEGER NOT NULL DEFAULT 0,
    expires_ms   INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE relay_instances (
    instance   TEXT    PRIMARY KEY,
    expires_ms INTEGER NOT NULL
);
