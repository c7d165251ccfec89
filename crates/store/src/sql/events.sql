-- Audit events: one row per state change, written by triggers in the same transaction as the
-- change itself (the outbox pattern: webhooks, tapes and metrics read from here, and no code
-- path can change state without its event). Who acted comes from functions the store registers
-- on its connections (instavm_actor_type/id, instavm_request_id), set per call by the server.
-- `seq` is the position in the log (the next one is MAX + 1: no AUTOINCREMENT bookkeeping, and
-- events are never deleted from the newest end); the public id carries it, so looking an event
-- up by id needs no index of its own. One index: users read their own events.
CREATE TABLE events (
    seq           INTEGER PRIMARY KEY,
    id            TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    user_id       INTEGER,
    event_group   TEXT NOT NULL,
    event_type    TEXT NOT NULL,
    status        TEXT NOT NULL,
    vm_id         TEXT,
    session_id    TEXT,
    resource_type TEXT NOT NULL,
    resource_id   TEXT NOT NULL,
    actor_type    TEXT NOT NULL,
    actor_id      TEXT,
    request_id    TEXT,
    payload       TEXT NOT NULL DEFAULT '{}',
    error_message TEXT
);
CREATE INDEX events_user ON events(user_id, seq);

-- What the triggers below write into: the log fills in the position (the next one is MAX + 1),
-- the public id, the time and the actor, so each trigger names only what changed.
CREATE VIEW event_log AS
    SELECT user_id, event_group, event_type, status, vm_id, session_id, resource_type,
        resource_id, payload, error_message FROM events;
CREATE TRIGGER event_log_insert INSTEAD OF INSERT ON event_log BEGIN
    INSERT INTO events (seq, id, created_at, user_id, event_group, event_type, status, vm_id,
        session_id, resource_type, resource_id, actor_type, actor_id, request_id, payload,
        error_message)
    SELECT n, 'evt_' || printf('%x', n) || '_' || lower(hex(randomblob(8))),
        CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER),
        NEW.user_id, NEW.event_group, NEW.event_type, NEW.status, NEW.vm_id, NEW.session_id,
        NEW.resource_type, NEW.resource_id,
        instavm_actor_type(), instavm_actor_id(), instavm_request_id(),
        IFNULL(NEW.payload, '{}'), NEW.error_message
    FROM (SELECT IFNULL(MAX(seq), 0) + 1 AS n FROM events);
END;

-- Users and keys.
CREATE TRIGGER events_user_created AFTER INSERT ON users BEGIN
    INSERT INTO event_log (user_id, event_group, event_type, status, resource_type,
        resource_id, payload)
    VALUES (NEW.id, 'user', 'user.created', 'success', 'user', CAST(NEW.id AS TEXT),
        json_object('email', NEW.email, 'is_admin', json(CASE WHEN NEW.is_admin THEN 'true' ELSE 'false' END)));
END;
CREATE TRIGGER events_api_key_created AFTER INSERT ON api_keys BEGIN
    INSERT INTO event_log (user_id, event_group, event_type, status, resource_type,
        resource_id, payload)
    VALUES (NEW.user_id, 'api_key', 'api_key.created', 'success', 'api_key', CAST(NEW.id AS TEXT),
        json_object('prefix', NEW.prefix, 'description', NEW.description));
END;
CREATE TRIGGER events_api_key_changed AFTER UPDATE ON api_keys
WHEN OLD.is_active IS NOT NEW.is_active OR OLD.description IS NOT NEW.description BEGIN
    INSERT INTO event_log (user_id, event_group, event_type, status, resource_type,
        resource_id, payload)
    VALUES (NEW.user_id, 'api_key',
        CASE WHEN OLD.is_active AND NOT NEW.is_active THEN 'api_key.revoked'
             WHEN NOT OLD.is_active AND NEW.is_active THEN 'api_key.activated'
             ELSE 'api_key.updated' END,
        'success', 'api_key', CAST(NEW.id AS TEXT),
        json_object('prefix', NEW.prefix, 'description', NEW.description,
            'is_active', json(CASE WHEN NEW.is_active THEN 'true' ELSE 'false' END)));
END;
CREATE TRIGGER events_api_key_deleted AFTER DELETE ON api_keys BEGIN
    INSERT INTO event_log (user_id, event_group, event_type, status, resource_type,
        resource_id, payload)
    VALUES (OLD.user_id, 'api_key', 'api_key.deleted', 'success', 'api_key', CAST(OLD.id AS TEXT),
        json_object('prefix', OLD.prefix));
END;
CREATE TRIGGER events_ssh_key_added AFTER INSERT ON ssh_keys BEGIN
    INSERT INTO event_log (user_id, event_group, event_type, status, resource_type,
        resource_id, payload)
    VALUES (NEW.user_id, 'ssh_key', 'ssh_key.added', 'success', 'ssh_key', CAST(NEW.id AS TEXT),
        json_object('fingerprint', NEW.fingerprint, 'key_type', NEW.key_type, 'comment', NEW.comment));
END;
CREATE TRIGGER events_ssh_key_removed AFTER DELETE ON ssh_keys BEGIN
    INSERT INTO event_log (user_id, event_group, event_type, status, resource_type,
        resource_id, payload)
    VALUES (OLD.user_id, 'ssh_key', 'ssh_key.removed', 'success', 'ssh_key', CAST(OLD.id AS TEXT),
        json_object('fingerprint', OLD.fingerprint));
END;

-- Sessions.
CREATE TRIGGER events_session_started AFTER INSERT ON sessions BEGIN
    INSERT INTO event_log (user_id, event_group, event_type, status, vm_id, session_id,
        resource_type, resource_id, payload)
    VALUES (NEW.user_id, 'session', 'session.started', 'success', NEW.vm_id, NEW.id, 'session', NEW.id,
        json_object('memory_mb', NEW.memory_mb, 'vcpu_count', NEW.vcpu_count,
            'lifetime_seconds', NEW.lifetime_seconds));
END;
CREATE TRIGGER events_session_status AFTER UPDATE OF status ON sessions
WHEN OLD.status IS NOT NEW.status BEGIN
    INSERT INTO event_log (user_id, event_group, event_type, status, vm_id, session_id,
        resource_type, resource_id, payload)
    VALUES (NEW.user_id, 'session',
        CASE WHEN NEW.status = 'active' THEN 'session.resumed' ELSE 'session.' || NEW.status END,
        'success', NEW.vm_id, NEW.id, 'session', NEW.id,
        json_object('from', OLD.status, 'reason', NEW.end_reason));
END;

-- VMs: the record is JSON; the columns beside it are kept in step by every write.
CREATE TRIGGER events_vm_created AFTER INSERT ON vms BEGIN
    INSERT INTO event_log (user_id, event_group, event_type, status, vm_id, session_id,
        resource_type, resource_id, payload)
    VALUES (NEW.user_id, 'vm', 'vm.created', 'success', NEW.id, NEW.session_id, 'vm', NEW.id,
        json_object('status', NEW.status,
            'memory_mb', json_extract(NEW.record, '$.memory_mb'),
            'vcpu_count', json_extract(NEW.record, '$.vcpu_count'),
            'snapshot_id', json_extract(NEW.record, '$.snapshot_id')));
END;
CREATE TRIGGER events_vm_status AFTER UPDATE OF status ON vms
WHEN OLD.status IS NOT NEW.status BEGIN
    INSERT INTO event_log (user_id, event_group, event_type, status, vm_id, session_id,
        resource_type, resource_id, payload, error_message)
    VALUES (NEW.user_id, 'vm', 'vm.' || NEW.status,
        CASE WHEN NEW.status = 'failed' THEN 'failure' ELSE 'success' END,
        NEW.id, NEW.session_id, 'vm', NEW.id,
        json_object('from', OLD.status, 'reason', json_extract(NEW.record, '$.end_reason'),
            'resumed_vm_id', json_extract(NEW.record, '$.resumed_vm_id')),
        CASE WHEN NEW.status = 'failed' THEN json_extract(NEW.record, '$.end_reason') END);
END;
CREATE TRIGGER events_vm_updated AFTER UPDATE OF record ON vms
WHEN OLD.status IS NEW.status AND (
    json_extract(OLD.record, '$.memory_mb') IS NOT json_extract(NEW.record, '$.memory_mb')
    OR json_extract(OLD.record, '$.auto_suspend') IS NOT json_extract(NEW.record, '$.auto_suspend')
    OR json_extract(OLD.record, '$.auto_resume') IS NOT json_extract(NEW.record, '$.auto_resume')
    OR json_extract(OLD.record, '$.snapshot_on_terminate') IS NOT json_extract(NEW.record, '$.snapshot_on_terminate')
    OR json_extract(OLD.record, '$.snapshot_name') IS NOT json_extract(NEW.record, '$.snapshot_name')
    OR json_extract(OLD.record, '$.vault_ids') IS NOT json_extract(NEW.record, '$.vault_ids')) BEGIN
    INSERT INTO event_log (user_id, event_group, event_type, status, vm_id, session_id,
        resource_type, resource_id, payload)
    VALUES (NEW.user_id, 'vm', 'vm.updated', 'success', NEW.id, NEW.session_id, 'vm', NEW.id,
        json_object('memory_mb', json_extract(NEW.record, '$.memory_mb'),
            'auto_suspend', json_extract(NEW.record, '$.auto_suspend'),
            'auto_resume', json_extract(NEW.record, '$.auto_resume'),
            'snapshot_on_terminate', json_extract(NEW.record, '$.snapshot_on_terminate'),
            'snapshot_name', json_extract(NEW.record, '$.snapshot_name'),
            'vault_ids', json_extract(NEW.record, '$.vault_ids')));
END;

-- Snapshots.
CREATE TRIGGER events_snapshot_created AFTER INSERT ON snapshots BEGIN
    INSERT INTO event_log (user_id, event_group, event_type, status, vm_id,
        resource_type, resource_id, payload)
    VALUES (NEW.user_id, 'snapshot', 'snapshot.created', 'success', json_extract(NEW.record, '$.vm_id'),
        'snapshot', NEW.id, json_object('name', json_extract(NEW.record, '$.name'), 'status', NEW.status));
END;
CREATE TRIGGER events_snapshot_status AFTER UPDATE OF status ON snapshots
WHEN OLD.status IS NOT NEW.status BEGIN
    INSERT INTO event_log (user_id, event_group, event_type, status, vm_id,
        resource_type, resource_id, payload)
    VALUES (NEW.user_id, 'snapshot', 'snapshot.' || NEW.status,
        CASE WHEN NEW.status IN ('failed', 'error') THEN 'failure' ELSE 'success' END,
        json_extract(NEW.record, '$.vm_id'), 'snapshot', NEW.id,
        json_object('name', json_extract(NEW.record, '$.name'), 'from', OLD.status));
END;
CREATE TRIGGER events_snapshot_deleted AFTER DELETE ON snapshots BEGIN
    INSERT INTO event_log (user_id, event_group, event_type, status, vm_id,
        resource_type, resource_id, payload)
    VALUES (OLD.user_id, 'snapshot', 'snapshot.deleted', 'success', json_extract(OLD.record, '$.vm_id'),
        'snapshot', OLD.id, json_object('name', json_extract(OLD.record, '$.name')));
END;

-- Shares.
CREATE TRIGGER events_share_created AFTER INSERT ON shares BEGIN
    INSERT INTO event_log (user_id, event_group, event_type, status, vm_id, session_id,
        resource_type, resource_id, payload)
    VALUES (NEW.user_id, 'share', 'share.created', 'success', NEW.vm_id, NEW.session_id, 'share', NEW.id,
        json_object('port', NEW.port, 'is_public', json(CASE WHEN NEW.is_public THEN 'true' ELSE 'false' END)));
END;
CREATE TRIGGER events_share_visibility AFTER UPDATE OF is_public ON shares
WHEN OLD.is_public IS NOT NEW.is_public BEGIN
    INSERT INTO event_log (user_id, event_group, event_type, status, vm_id, session_id,
        resource_type, resource_id, payload)
    VALUES (NEW.user_id, 'share', 'share.visibility_changed', 'success', NEW.vm_id, NEW.session_id, 'share', NEW.id,
        json_object('port', NEW.port, 'is_public', json(CASE WHEN NEW.is_public THEN 'true' ELSE 'false' END)));
END;
CREATE TRIGGER events_share_revoked AFTER UPDATE OF revoked_at ON shares
WHEN OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL BEGIN
    INSERT INTO event_log (user_id, event_group, event_type, status, vm_id, session_id,
        resource_type, resource_id, payload)
    VALUES (NEW.user_id, 'share', 'share.revoked', 'success', NEW.vm_id, NEW.session_id, 'share', NEW.id,
        json_object('port', NEW.port));
END;

-- Volumes, their checkpoints, and mounts into VMs.
CREATE TRIGGER events_volume_created AFTER INSERT ON volumes BEGIN
    INSERT INTO event_log (user_id, event_group, event_type, status, resource_type,
        resource_id, payload)
    VALUES (NEW.user_id, 'volume', 'volume.created', 'success', 'volume', NEW.id,
        json_object('name', NEW.name, 'quota_bytes', NEW.quota_bytes));
END;
CREATE TRIGGER events_volume_updated AFTER UPDATE ON volumes
WHEN OLD.name IS NOT NEW.name OR OLD.quota_bytes IS NOT NEW.quota_bytes BEGIN
    INSERT INTO event_log (user_id, event_group, event_type, status, resource_type,
        resource_id, payload)
    VALUES (NEW.user_id, 'volume', 'volume.updated', 'success', 'volume', NEW.id,
        json_object('name', NEW.name, 'quota_bytes', NEW.quota_bytes));
END;
CREATE TRIGGER events_volume_deleted AFTER DELETE ON volumes BEGIN
    INSERT INTO event_log (user_id, event_group, event_type, status, resource_type,
        resource_id, payload)
    VALUES (OLD.user_id, 'volume', 'volume.deleted', 'success', 'volume', OLD.id,
        json_object('name', OLD.name));
END;
CREATE TRIGGER events_checkpoint_created AFTER INSERT ON volume_checkpoints BEGIN
    INSERT INTO event_log (user_id, event_group, event_type, status, resource_type,
        resource_id, payload)
    VALUES ((SELECT user_id FROM volumes WHERE id = NEW.volume_id), 'volume', 'volume.checkpoint_created', 'success',
        'volume_checkpoint', NEW.id, json_object('volume_id', NEW.volume_id, 'name', NEW.name, 'size_bytes', NEW.size_bytes));
END;
CREATE TRIGGER events_checkpoint_deleted AFTER DELETE ON volume_checkpoints BEGIN
    INSERT INTO event_log (user_id, event_group, event_type, status, resource_type,
        resource_id, payload)
    VALUES ((SELECT user_id FROM volumes WHERE id = OLD.volume_id), 'volume', 'volume.checkpoint_deleted', 'success',
        'volume_checkpoint', OLD.id, json_object('volume_id', OLD.volume_id));
END;
CREATE TRIGGER events_volume_mounted AFTER INSERT ON vm_mounts BEGIN
    INSERT INTO event_log (user_id, event_group, event_type, status, vm_id, resource_type,
        resource_id, payload)
    VALUES ((SELECT user_id FROM volumes WHERE id = NEW.volume_id), 'volume', 'volume.mounted', 'success', NEW.vm_id,
        'volume', NEW.volume_id, json_object('mount_path', NEW.mount_path, 'mode', NEW.mode, 'checkpoint_id', NEW.checkpoint_id));
END;
CREATE TRIGGER events_volume_unmounted AFTER DELETE ON vm_mounts BEGIN
    INSERT INTO event_log (user_id, event_group, event_type, status, vm_id, resource_type,
        resource_id, payload)
    VALUES ((SELECT user_id FROM volumes WHERE id = OLD.volume_id), 'volume', 'volume.unmounted', 'success', OLD.vm_id,
        'volume', OLD.volume_id, json_object('mount_path', OLD.mount_path));
END;

-- Egress policies of VMs and sessions.
CREATE TRIGGER events_egress_set AFTER INSERT ON egress_policies BEGIN
    INSERT INTO event_log (user_id, event_group, event_type, status, vm_id, session_id,
        resource_type, resource_id, payload)
    VALUES (NEW.user_id, 'egress', 'egress.policy_set', 'success',
        CASE WHEN NEW.target_type = 'vm' THEN NEW.target_id END,
        CASE WHEN NEW.target_type = 'session' THEN NEW.target_id END,
        NEW.target_type, NEW.target_id, json(NEW.policy));
END;
CREATE TRIGGER events_egress_changed AFTER UPDATE OF policy ON egress_policies
WHEN OLD.policy IS NOT NEW.policy BEGIN
    INSERT INTO event_log (user_id, event_group, event_type, status, vm_id, session_id,
        resource_type, resource_id, payload)
    VALUES (NEW.user_id, 'egress', 'egress.policy_set', 'success',
        CASE WHEN NEW.target_type = 'vm' THEN NEW.target_id END,
        CASE WHEN NEW.target_type = 'session' THEN NEW.target_id END,
        NEW.target_type, NEW.target_id, json(NEW.policy));
END;
