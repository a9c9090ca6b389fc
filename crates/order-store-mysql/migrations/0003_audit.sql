-- Who did what to the DLQ (and the test/admin switches). Append-only: the
-- service never updates or deletes a row (grant the service account only
-- INSERT and SELECT on it to enforce that in the database too).
CREATE TABLE IF NOT EXISTS audit_log (
    id         BIGINT       NOT NULL AUTO_INCREMENT,
    at         DATETIME(6)  NOT NULL,
    principal  VARCHAR(255) NOT NULL,
    role       VARCHAR(20)  NOT NULL,
    action     VARCHAR(50)  NOT NULL,
    target     VARCHAR(255) NULL,
    parameters MEDIUMTEXT   NOT NULL,
    result     VARCHAR(255) NOT NULL,
    PRIMARY KEY (id),
    KEY idx_audit_at (at, id),
    KEY idx_audit_principal (principal, at),
    KEY idx_audit_action (action, at),
    KEY idx_audit_target (target, at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
