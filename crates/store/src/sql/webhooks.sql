-- Webhooks: endpoints, and deliveries queued from the audit events (the outbox): the dispatcher
-- turns each event past `webhook_dispatch.last_seq` into one delivery per matching endpoint, in
-- one transaction with moving the cursor, so a restart neither loses nor doubles a delivery.
CREATE TABLE webhook_endpoints (
    id              TEXT PRIMARY KEY,
    user_id         INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    url             TEXT NOT NULL,
    description     TEXT,
    event_patterns  TEXT NOT NULL,
    secret          TEXT NOT NULL,
    timeout_seconds INTEGER NOT NULL,
    max_retries     INTEGER NOT NULL,
    enabled         INTEGER NOT NULL DEFAULT 1,
    verified_at     INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX webhook_endpoints_user ON webhook_endpoints(user_id);
CREATE TABLE webhook_deliveries (
    seq              INTEGER PRIMARY KEY,
    id               TEXT NOT NULL UNIQUE,
    endpoint_id      TEXT NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
    user_id          INTEGER NOT NULL,
    event_id         TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    body             TEXT NOT NULL,
    status           TEXT NOT NULL,
    attempt_count    INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    last_status_code INTEGER,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    delivered_at     INTEGER
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(status, next_attempt_at);
CREATE INDEX webhook_deliveries_user ON webhook_deliveries(user_id, seq);
CREATE TABLE webhook_attempts (
    delivery_id TEXT NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
    n           INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    status_code INTEGER,
    error       TEXT,
    duration_ms INTEGER NOT NULL,
    PRIMARY KEY (delivery_id, n)
);
CREATE TABLE webhook_dispatch (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    last_seq INTEGER NOT NULL
);
-- Events from before webhooks existed are not delivered.
INSERT INTO webhook_dispatch (id, last_seq) VALUES (1, (SELECT IFNULL(MAX(seq), 0) FROM events));
