-- Who did what to the DLQ (and the test/admin switches). Append-only: the
-- service never updates or deletes a row, and the triggers refuse it.
CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         TEXT    NOT NULL,
    principal  TEXT    NOT NULL,
    role       TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    target     TEXT,
    parameters TEXT    NOT NULL,
    result     TEXT    NOT NULL
);

CREATE INDEX idx_audit_at ON audit_log (at, id);
CREATE INDEX idx_audit_principal ON audit_log (principal, at);
CREATE INDEX idx_audit_action ON audit_log (action, at);
CREATE INDEX idx_audit_target ON audit_log (target, at);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
