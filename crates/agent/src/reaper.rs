//! PID 1 duties: reap every process that exits in the sandbox (orphans included) and hand the
//! exit status of the processes the agent started to whoever waits for them.

use crate::sys::{self, Exited};
use std::collections::HashMap;
use std::io;
use std::os::fd::OwnedFd;
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

/// One started process. `wake` becomes readable when it has exited, so a poll loop over its
/// output pipes notices the exit too.
pub struct Waiter {
    pub pid: i32,
    pub wake: OwnedFd,
    exited: Mutex<Option<Exited>>,
}

impl Waiter {
    pub fn take(&self) -> Option<Exited> {
        lock(&self.exited).take()
    }

    pub fn has_exited(&self) -> bool {
        lock(&self.exited).is_some()
    }
}

#[derive(Default)]
struct Table {
    waiting: HashMap<i32, Arc<Waiter>>,
}

fn table() -> &'static Mutex<Table> {
    static TABLE: OnceLock<Mutex<Table>> = OnceLock::new();
    TABLE.get_or_init(Default::default)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Start the reaper thread. SIGCHLD must already be blocked in every thread.
pub fn start() -> io::Result<()> {
    std::thread::Builder::new()
        .name("reaper".into())
        .stack_size(64 << 10)
        .spawn(|| loop {
            sys::wait_sigchld();
            reap_all();
        })?;
    Ok(())
}

fn reap_all() {
    // The table lock is held while reaping, so a process cannot be reaped between its spawn
    // and its registration (see `spawn`).
    let mut t = lock(table());
    while let Some(exited) = sys::reap_any() {
        if let Some(w) = t.waiting.remove(&exited.pid) {
            *lock(&w.exited) = Some(exited);
            sys::eventfd_signal(&w.wake);
        }
        // Anything else was an orphan that re-parented to us: reaped, nothing to report.
    }
}

/// Spawn `cmd` and register it for its exit status. The caller must never `wait` the child.
pub fn spawn(cmd: &mut Command) -> io::Result<Arc<Waiter>> {
    let wake = sys::eventfd()?;
    let t = lock(table());
    let child = cmd.spawn()?;
    let pid = child.id() as i32;
    let w = Arc::new(Waiter {
        pid,
        wake,
        exited: Mutex::new(None),
    });
    let mut t = t;
    t.waiting.insert(pid, w.clone());
    drop(t);
    // `Child` would not reap on drop; the reaper thread owns reaping.
    drop(child);
    Ok(w)
}
