-- Workloads: deployed cron and job manifests, and their runs (docs/deploy.md).
-- A cron workload's `next_run_at` moves forward in the same transaction that inserts the run
-- for that time, so a restart can neither lose nor repeat a run.
CREATE TABLE workloads (
    id             TEXT PRIMARY KEY,
    user_id        INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    slug           TEXT NOT NULL,
    kind           TEXT NOT NULL,
    version        TEXT NOT NULL,
    status         TEXT NOT NULL,
    snapshot_id    TEXT NOT NULL,
    workdir        TEXT NOT NULL,
    start_command  TEXT NOT NULL,
    env            TEXT NOT NULL,
    vm             TEXT NOT NULL,
    schedule       TEXT,
    triggers       TEXT NOT NULL,
    webhook_secret TEXT,
    next_run_at    INTEGER,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    UNIQUE (user_id, slug)
);
CREATE INDEX workloads_due ON workloads(next_run_at) WHERE status = 'active';

CREATE TABLE workload_runs (
    id            TEXT PRIMARY KEY,
    workload_id   TEXT NOT NULL REFERENCES workloads(id) ON DELETE CASCADE,
    user_id       INTEGER NOT NULL,
    trigger       TEXT NOT NULL,
    status        TEXT NOT NULL,
    exit_code     INTEGER,
    attempt       INTEGER NOT NULL,
    scheduled_for INTEGER,
    not_before    INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    started_at    INTEGER,
    finished_at   INTEGER,
    vm_id         TEXT,
    error         TEXT,
    payload       TEXT,
    stdout        TEXT NOT NULL DEFAULT '',
    stderr        TEXT NOT NULL DEFAULT ''
);
CREATE INDEX workload_runs_history ON workload_runs(workload_id, created_at);
CREATE INDEX workload_runs_pending ON workload_runs(status) WHERE status IN ('queued', 'running');

CREATE TRIGGER events_workload_deployed AFTER INSERT ON workloads BEGIN
    INSERT INTO event_log (user_id, event_group, event_type, status, resource_type, resource_id, payload)
    VALUES (NEW.user_id, 'workload', 'workload.deployed', 'success', 'workload', NEW.id,
        json_object('slug', NEW.slug, 'kind', NEW.kind, 'version', NEW.version));
END;
CREATE TRIGGER events_workload_redeployed AFTER UPDATE OF version, snapshot_id ON workloads BEGIN
    INSERT INTO event_log (user_id, event_group, event_type, status, resource_type, resource_id, payload)
    VALUES (NEW.user_id, 'workload', 'workload.deployed', 'success', 'workload', NEW.id,
        json_object('slug', NEW.slug, 'kind', NEW.kind, 'version', NEW.version));
END;
CREATE TRIGGER events_workload_status AFTER UPDATE OF status ON workloads
WHEN OLD.status IS NOT NEW.status BEGIN
    INSERT INTO event_log (user_id, event_group, event_type, status, resource_type, resource_id, payload)
    VALUES (NEW.user_id, 'workload', 'workload.' || CASE NEW.status WHEN 'paused' THEN 'paused' ELSE 'resumed' END,
        'success', 'workload', NEW.id, json_object('slug', NEW.slug));
END;
CREATE TRIGGER events_workload_deleted AFTER DELETE ON workloads BEGIN
    INSERT INTO event_log (user_id, event_group, event_type, status, resource_type, resource_id, payload)
    VALUES (OLD.user_id, 'workload', 'workload.deleted', 'success', 'workload', OLD.id,
        json_object('slug', OLD.slug));
END;
CREATE TRIGGER events_run_finished AFTER UPDATE OF status ON workload_runs
WHEN NEW.status IN ('succeeded', 'failed', 'timed_out', 'skipped') AND OLD.status IS NOT NEW.status BEGIN
    INSERT INTO event_log (user_id, event_group, event_type, status, vm_id, resource_type, resource_id, payload, error_message)
    VALUES (NEW.user_id, 'workload', 'workload.run_' || NEW.status,
        CASE WHEN NEW.status = 'succeeded' THEN 'success' ELSE 'failure' END, NEW.vm_id,
        'workload_run', NEW.id,
        json_object('workload_id', NEW.workload_id, 'trigger', NEW.trigger, 'exit_code', NEW.exit_code,
            'attempt', NEW.attempt), NEW.error);
END;
