-- Per-user quota overrides an operator sets (the fields of instavm_api::UserLimits, as JSON).
-- No row: the server's limits apply. Each change is one audit event.
CREATE TABLE user_limits (
    user_id     INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    overrides   TEXT NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE TRIGGER events_user_limits_set AFTER INSERT ON user_limits BEGIN
    INSERT INTO event_log (user_id, event_group, event_type, status, resource_type,
        resource_id, payload)
    VALUES (NEW.user_id, 'user', 'user.limits_updated', 'success', 'user',
        CAST(NEW.user_id AS TEXT), json_object('overrides', json(NEW.overrides)));
END;
CREATE TRIGGER events_user_limits_changed AFTER UPDATE OF overrides ON user_limits
WHEN OLD.overrides IS NOT NEW.overrides BEGIN
    INSERT INTO event_log (user_id, event_group, event_type, status, resource_type,
        resource_id, payload)
    VALUES (NEW.user_id, 'user', 'user.limits_updated', 'success', 'user',
        CAST(NEW.user_id AS TEXT), json_object('overrides', json(NEW.overrides)));
END;
CREATE TRIGGER events_user_limits_cleared AFTER DELETE ON user_limits
WHEN EXISTS (SELECT 1 FROM users WHERE id = OLD.user_id) BEGIN
    INSERT INTO event_log (user_id, event_group, event_type, status, resource_type,
        resource_id, payload)
    VALUES (OLD.user_id, 'user', 'user.limits_updated', 'success', 'user',
        CAST(OLD.user_id AS TEXT), json_object('overrides', json('{}')));
END;
