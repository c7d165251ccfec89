-- Tapes: a session recorded step by step. `total_steps` is the last step given out; an event
-- takes the next one in the transaction that inserts it, so steps of a tape are 1, 2, 3, ...
-- with no gaps and no two events on one step. A session records on at most one tape at once.
CREATE TABLE tapes (
    id                    TEXT PRIMARY KEY,
    user_id               INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    session_id            TEXT NOT NULL,
    vm_id                 TEXT,
    status                TEXT NOT NULL,
    record_fs             INTEGER NOT NULL,
    record_egress_content INTEGER NOT NULL,
    retention_days        INTEGER NOT NULL,
    parent_tape_id        TEXT,
    parent_step_id        INTEGER,
    total_steps           INTEGER NOT NULL DEFAULT 0,
    created_at            INTEGER NOT NULL,
    stopped_at            INTEGER,
    expires_at            INTEGER NOT NULL,
    error                 TEXT
);
CREATE INDEX tapes_user ON tapes(user_id, created_at);
CREATE UNIQUE INDEX tapes_recording ON tapes(session_id) WHERE status = 'recording';
CREATE INDEX tapes_expiry ON tapes(expires_at) WHERE status != 'expired';

CREATE TABLE tape_events (
    tape_id        TEXT NOT NULL REFERENCES tapes(id) ON DELETE CASCADE,
    step_id        INTEGER NOT NULL,
    kind           TEXT NOT NULL,
    ts             INTEGER NOT NULL,
    parent_step_id INTEGER,
    checkpoint_id  TEXT,
    payload        TEXT NOT NULL,
    PRIMARY KEY (tape_id, step_id)
) WITHOUT ROWID;
CREATE INDEX tape_events_kind ON tape_events(tape_id, kind, step_id);

-- The filesystem checkpoints of a tape (runtime snapshots of the VM's writable layer): the
-- state after `step_id` (0: when recording started). The runtime's snapshot is taken first,
-- so a crash leaves at worst a snapshot without a row, which the start-up sweep removes.
CREATE TABLE tape_checkpoints (
    id          TEXT PRIMARY KEY,
    tape_id     TEXT NOT NULL REFERENCES tapes(id) ON DELETE CASCADE,
    step_id     INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX tape_checkpoints_step ON tape_checkpoints(tape_id, step_id);

CREATE TRIGGER events_tape_started AFTER INSERT ON tapes BEGIN
    INSERT INTO event_log (user_id, event_group, event_type, status, session_id, vm_id,
        resource_type, resource_id, payload)
    VALUES (NEW.user_id, 'tape', 'tape.started', 'success', NEW.session_id, NEW.vm_id, 'tape',
        NEW.id, json_object('record_fs', json(CASE WHEN NEW.record_fs THEN 'true' ELSE 'false' END),
            'parent_tape_id', NEW.parent_tape_id, 'parent_step_id', NEW.parent_step_id));
END;
CREATE TRIGGER events_tape_status AFTER UPDATE OF status ON tapes
WHEN OLD.status IS NOT NEW.status BEGIN
    INSERT INTO event_log (user_id, event_group, event_type, status, session_id, vm_id,
        resource_type, resource_id, payload, error_message)
    VALUES (NEW.user_id, 'tape', 'tape.' || NEW.status,
        CASE WHEN NEW.status = 'failed' THEN 'failure' ELSE 'success' END,
        NEW.session_id, NEW.vm_id, 'tape', NEW.id,
        json_object('total_steps', NEW.total_steps), NEW.error);
END;
CREATE TRIGGER events_tape_deleted AFTER DELETE ON tapes
WHEN EXISTS (SELECT 1 FROM users WHERE id = OLD.user_id) BEGIN
    INSERT INTO event_log (user_id, event_group, event_type, status, session_id, vm_id,
        resource_type, resource_id, payload)
    VALUES (OLD.user_id, 'tape', 'tape.deleted', 'success', OLD.session_id, OLD.vm_id, 'tape',
        OLD.id, json_object('total_steps', OLD.total_steps));
END;
