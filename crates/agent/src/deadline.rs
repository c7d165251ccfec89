//! The sandbox's own end: when its deadline passes, PID 1 exits and the kernel kills everything
//! in the pid namespace. The host normally destroys an expired sandbox first (the host's
//! deadline is earlier); this covers the case where no server is running to do it.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

static DEADLINE: AtomicI64 = AtomicI64::new(i64::MAX);

pub fn set(unix_secs: i64) {
    DEADLINE.store(unix_secs, Ordering::SeqCst);
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

pub fn start(unix_secs: i64) -> std::io::Result<()> {
    set(unix_secs);
    std::thread::Builder::new()
        .name("deadline".into())
        .stack_size(64 << 10)
        .spawn(|| loop {
            let left = DEADLINE.load(Ordering::SeqCst).saturating_sub(now());
            if left <= 0 {
                eprintln!("instavm-agent: the sandbox's lifetime is over");
                std::process::exit(0);
            }
            // Re-check at least every minute: the deadline may move.
            std::thread::sleep(Duration::from_secs(left.clamp(1, 60) as u64));
        })?;
    Ok(())
}
