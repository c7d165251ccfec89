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
    -- The event log's position when the endpoint was created or last enabled: it is sent
    -- the events after it only.
    since_seq       INTEGER NOT NULL DEFAULT 0,
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

-- Audit events for endpoint changes (events.sql style). The secret never enters an event.
CREATE TRIGGER events_webhook_created AFTER INSERT ON webhook_endpoints BEGIN
    INSERT INTO event_log (user_id, event_group, event_type, status, resource_type,
        resource_id, payload)
    VALUES (NEW.user_id, 'webhook', 'webhook.endpoint_created', 'success', 'webhook_endpoint',
        NEW.id, json_object('url', NEW.url, 'event_patterns', json(NEW.event_patterns)));
END;
CREATE TRIGGER events_webhook_enabled AFTER UPDATE OF enabled ON webhook_endpoints
WHEN OLD.enabled IS NOT NEW.enabled BEGIN
    INSERT INTO event_log (user_id, event_group, event_type, status, resource_type,
        resource_id, payload)
    VALUES (NEW.user_id, 'webhook',
        CASE WHEN NEW.enabled THEN 'webhook.endpoint_enabled' ELSE 'webhook.endpoint_disabled' END,
        'success', 'webhook_endpoint', NEW.id, json_object('url', NEW.url));
END;
CREATE TRIGGER events_webhook_updated AFTER UPDATE ON webhook_endpoints
WHEN OLD.url IS NOT NEW.url OR OLD.description IS NOT NEW.description
    OR OLD.event_patterns IS NOT NEW.event_patterns OR OLD.timeout_seconds IS NOT NEW.timeout_seconds
    OR OLD.max_retries IS NOT NEW.max_retries BEGIN
    INSERT INTO event_log (user_id, event_group, event_type, status, resource_type,
        resource_id, payload)
    VALUES (NEW.user_id, 'webhook', 'webhook.endpoint_updated', 'success', 'webhook_endpoint',
        NEW.id, json_object('url', NEW.url, 'event_patterns', json(NEW.event_patterns),
            'timeout_seconds', NEW.timeout_seconds, 'max_retries', NEW.max_retries));
END;
CREATE TRIGGER events_webhook_secret_rotated AFTER UPDATE OF secret ON webhook_endpoints
WHEN OLD.secret IS NOT NEW.secret BEGIN
    INSERT INTO event_log (user_id, event_group, event_type, status, resource_type,
        resource_id, payload)
    VALUES (NEW.user_id, 'webhook', 'webhook.secret_rotated', 'success', 'webhook_endpoint',
        NEW.id, '{}');
END;
CREATE TRIGGER events_webhook_deleted AFTER DELETE ON webhook_endpoints BEGIN
    INSERT INTO event_log (user_id, event_group, event_type, status, resource_type,
        resource_id, payload)
    VALUES (OLD.user_id, 'webhook', 'webhook.endpoint_deleted', 'success', 'webhook_endpoint',
        OLD.id, json_object('url', OLD.url));
END;
