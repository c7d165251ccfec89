//! How every process of user code starts: the sandbox's environment and working directory,
//! every CPU (the agent itself may be pinned to one), and a setup step between fork and exec.

use crate::env;
use std::ffi::OsStr;
use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// `program args...` for user code. `setup` runs in the child before exec and must only make
/// async-signal-safe calls (`sys::child_setup`, `sys::pty_child_setup`).
pub fn user_command<I, S>(program: &str, args: I, setup: fn() -> io::Result<()>) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let env = env::get();
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(env.vars.iter().map(|(k, v)| (k, v)))
        .current_dir(env.workdir_or_root());
    let all_cpus = crate::cpus::all();
    // SAFETY: the closure only makes async-signal-safe system calls (`setup` must too).
    unsafe {
        cmd.pre_exec(move || {
            setup()?;
            if let Some(set) = all_cpus {
                set.apply(0)?;
            }
            Ok(())
        })
    };
    cmd
}
