-- A replay claims its record first, so replays on several instances (or a
-- retried request) never publish one record twice.
ALTER TABLE dlq_replay_records
    ADD COLUMN replay_claimed_by VARCHAR(64) NULL,
    ADD COLUMN replay_claimed_until DATETIME(6) NULL;
