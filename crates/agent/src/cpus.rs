//! Which CPUs the agent and the persistent interpreter run on. Pinned together to one CPU, a
//! cell's round trip (agent -> interpreter -> agent) needs no cross-CPU wake-up, which costs
//! about 100 us on virtualised hosts against 10 us on one CPU. Everything else the user runs
//! (bash executions) may use every CPU.

use crate::sys::CpuSet;
use std::sync::OnceLock;

static ALL: OnceLock<CpuSet> = OnceLock::new();

/// Remember every CPU we may use, then pin this (still single-threaded) process, so the
/// threads and the interpreter started afterwards inherit the pin.
pub fn init(cpu: Option<u32>) {
    if let Ok(all) = CpuSet::current() {
        let _ = ALL.set(all);
    }
    if let Some(cpu) = cpu {
        let _ = CpuSet::single(cpu).apply(0);
    }
}

/// The set a user process starts with: every CPU.
pub fn all() -> Option<CpuSet> {
    ALL.get().copied()
}

/// Re-pin (or un-pin) the agent's threads and the interpreter's.
pub fn set(cpu: Option<u32>, python_pid: Option<i32>) {
    let set = match cpu {
        Some(c) => CpuSet::single(c),
        None => match all() {
            Some(a) => a,
            None => return,
        },
    };
    set.apply_to_process(0);
    if let Some(pid) = python_pid {
        set.apply_to_process(pid);
    }
}
