-- The embedded bus: a durable log per topic (one partition, 0) and the
-- committed offset of each consumer group. The offset is the row id, so it
-- increases within a topic (it is not contiguous across topics).
CREATE TABLE bus_messages (
    "offset"     INTEGER PRIMARY KEY AUTOINCREMENT,
    topic        TEXT    NOT NULL,
    key          TEXT    NOT NULL,
    payload      BLOB    NOT NULL,
    headers      TEXT    NOT NULL,  -- JSON array of [name, value] pairs
    published_at TEXT    NOT NULL
);

CREATE INDEX idx_bus_messages_topic ON bus_messages (topic, "offset");

CREATE TABLE bus_offsets (
    group_id   TEXT    NOT NULL,
    topic      TEXT    NOT NULL,
    "offset"   INTEGER NOT NULL,    -- last processed message
    updated_at TEXT    NOT NULL,
    PRIMARY KEY (group_id, topic)
) WITHOUT ROWID;
