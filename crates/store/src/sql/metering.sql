-- Metering: what each session's sandbox used, sampled from its cgroup counters. A meter holds
-- the last cumulative CPU counter seen per session, so a sample is a delta and a restart
-- continues from the stored value. Samples are what usage, credits and trends add up.
CREATE TABLE usage_meters (
    session_id  TEXT PRIMARY KEY,
    cpu_total   REAL NOT NULL,
    at          INTEGER NOT NULL
);
CREATE TABLE usage_samples (
    seq             INTEGER PRIMARY KEY,
    user_id         INTEGER NOT NULL,
    session_id      TEXT NOT NULL,
    vm_id           TEXT,
    at              INTEGER NOT NULL,
    usage_type      TEXT NOT NULL DEFAULT 'vm_execution',
    cpu_seconds     REAL NOT NULL,
    mem_gib_seconds REAL NOT NULL
);
CREATE INDEX usage_samples_user ON usage_samples(user_id, at);
-- What the operator grants a user per calendar month (dollars of VM usage, browser calls).
CREATE TABLE credit_allocations (
    user_id            INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    dollars            REAL NOT NULL,
    browser_automation REAL NOT NULL,
    updated_at         INTEGER NOT NULL
);
