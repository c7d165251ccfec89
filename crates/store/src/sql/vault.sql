-- Secrets vaults (issue #13). Values live only in `vault_credentials.sealed` (AES-256-GCM, see
-- crates/vault/src/crypto.rs); no trigger below ever reads that column, so no event carries it.
CREATE TABLE vaults (
    id          TEXT PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    description TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX vaults_user ON vaults(user_id, created_at);
CREATE TABLE vault_credentials (
    id              TEXT PRIMARY KEY,
    vault_id        TEXT NOT NULL REFERENCES vaults(id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    credential_type TEXT NOT NULL,
    description     TEXT,
    enabled         INTEGER NOT NULL DEFAULT 1,
    sealed          BLOB NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    UNIQUE (vault_id, name)
);
CREATE TABLE vault_services (
    id          TEXT PRIMARY KEY,
    vault_id    TEXT NOT NULL REFERENCES vaults(id) ON DELETE CASCADE,
    host        TEXT NOT NULL,
    auth_config TEXT NOT NULL,
    enabled     INTEGER NOT NULL DEFAULT 1,
    description TEXT,
    template_id TEXT,
    created_at  INTEGER NOT NULL
);
CREATE INDEX vault_services_vault ON vault_services(vault_id);
-- One row per proxied request: never a value, never a query string.
CREATE TABLE vault_request_logs (
    seq             INTEGER PRIMARY KEY,
    vault_id        TEXT NOT NULL REFERENCES vaults(id) ON DELETE CASCADE,
    created_at      INTEGER NOT NULL,
    vm_id           TEXT,
    host            TEXT NOT NULL,
    method          TEXT NOT NULL,
    path            TEXT NOT NULL,
    status          INTEGER,
    credential_id   TEXT,
    credential_name TEXT
);
CREATE INDEX vault_request_logs_vault ON vault_request_logs(vault_id, seq);
CREATE INDEX vault_request_logs_time ON vault_request_logs(created_at);
-- The placeholder each VM sees for each credential it can use.
CREATE TABLE vault_placeholders (
    vm_id         TEXT NOT NULL,
    credential_id TEXT NOT NULL REFERENCES vault_credentials(id) ON DELETE CASCADE,
    token         TEXT NOT NULL,
    PRIMARY KEY (vm_id, credential_id)
);

CREATE TRIGGER events_vault_created AFTER INSERT ON vaults BEGIN
    INSERT INTO event_log (user_id, event_group, event_type, status, resource_type,
        resource_id, payload)
    VALUES (NEW.user_id, 'vault', 'vault.created', 'success', 'vault', NEW.id,
        json_object('name', NEW.name));
END;
CREATE TRIGGER events_vault_updated AFTER UPDATE OF name, description ON vaults
WHEN OLD.name IS NOT NEW.name OR OLD.description IS NOT NEW.description BEGIN
    INSERT INTO event_log (user_id, event_group, event_type, status, resource_type,
        resource_id, payload)
    VALUES (NEW.user_id, 'vault', 'vault.updated', 'success', 'vault', NEW.id,
        json_object('name', NEW.name));
END;
CREATE TRIGGER events_vault_deleted AFTER DELETE ON vaults BEGIN
    INSERT INTO event_log (user_id, event_group, event_type, status, resource_type,
        resource_id, payload)
    VALUES (OLD.user_id, 'vault', 'vault.deleted', 'success', 'vault', OLD.id,
        json_object('name', OLD.name));
END;
CREATE TRIGGER events_vault_credential_created AFTER INSERT ON vault_credentials BEGIN
    INSERT INTO event_log (user_id, event_group, event_type, status, resource_type,
        resource_id, payload)
    SELECT v.user_id, 'vault', 'vault.credential_created', 'success', 'vault_credential', NEW.id,
        json_object('vault_id', NEW.vault_id, 'name', NEW.name,
            'credential_type', NEW.credential_type)
    FROM vaults v WHERE v.id = NEW.vault_id;
END;
CREATE TRIGGER events_vault_credential_rotated AFTER UPDATE OF sealed ON vault_credentials BEGIN
    INSERT INTO event_log (user_id, event_group, event_type, status, resource_type,
        resource_id, payload)
    SELECT v.user_id, 'vault', 'vault.credential_rotated', 'success', 'vault_credential', NEW.id,
        json_object('vault_id', NEW.vault_id, 'name', NEW.name)
    FROM vaults v WHERE v.id = NEW.vault_id;
END;
-- A vault's own deletion is its event; its credentials and services go with it silently.
CREATE TRIGGER events_vault_credential_deleted AFTER DELETE ON vault_credentials BEGIN
    INSERT INTO event_log (user_id, event_group, event_type, status, resource_type,
        resource_id, payload)
    SELECT v.user_id, 'vault', 'vault.credential_deleted', 'success', 'vault_credential', OLD.id,
        json_object('vault_id', OLD.vault_id, 'name', OLD.name)
    FROM vaults v WHERE v.id = OLD.vault_id;
END;
CREATE TRIGGER events_vault_service_added AFTER INSERT ON vault_services BEGIN
    INSERT INTO event_log (user_id, event_group, event_type, status, resource_type,
        resource_id, payload)
    SELECT v.user_id, 'vault', 'vault.service_added', 'success', 'vault_service', NEW.id,
        json_object('vault_id', NEW.vault_id, 'host', NEW.host,
            'auth_type', json_extract(NEW.auth_config, '$.type'))
    FROM vaults v WHERE v.id = NEW.vault_id;
END;
CREATE TRIGGER events_vault_service_removed AFTER DELETE ON vault_services BEGIN
    INSERT INTO event_log (user_id, event_group, event_type, status, resource_type,
        resource_id, payload)
    SELECT v.user_id, 'vault', 'vault.service_removed', 'success', 'vault_service', OLD.id,
        json_object('vault_id', OLD.vault_id, 'host', OLD.host)
    FROM vaults v WHERE v.id = OLD.vault_id;
END;
-- The vault proxy and resolver ask which VM runs in a sandbox.
CREATE INDEX vms_sandbox ON vms(sandbox_id);
