-- The failure class (RETRYABLE / PERMANENT) of a parked publish and of the
-- last failed replay gets its own columns, so the automatic redrive no
-- longer parses it out of the reason's text. Rows stored before this
-- migration are classified once, from that text: the first of the marks
-- `retryable: ` / `permanent: ` a reason quotes is its error's.
ALTER TABLE dlq_replay_records
    ADD COLUMN failure_class VARCHAR(16) NULL,
    ADD COLUMN replay_failure_class VARCHAR(16) NULL;

UPDATE dlq_replay_records SET failure_class = CASE
    WHEN INSTR(failure_reason, 'permanent: ') > 0
         AND (INSTR(failure_reason, 'retryable: ') = 0
              OR INSTR(failure_reason, 'permanent: ') < INSTR(failure_reason, 'retryable: '))
        THEN 'PERMANENT'
    WHEN INSTR(failure_reason, 'retryable: ') > 0 THEN 'RETRYABLE'
    END
WHERE source = 'PUBLISH';

UPDATE dlq_replay_records SET replay_failure_class = CASE
    WHEN INSTR(replay_result, 'permanent: ') > 0
         AND (INSTR(replay_result, 'retryable: ') = 0
              OR INSTR(replay_result, 'permanent: ') < INSTR(replay_result, 'retryable: '))
        THEN 'PERMANENT'
    WHEN INSTR(replay_result, 'retryable: ') > 0 THEN 'RETRYABLE'
    END
WHERE source = 'PUBLISH' AND status = 'FAILED' AND replay_result IS NOT NULL;
