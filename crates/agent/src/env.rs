//! What executed code sees: environment variables and the working directory. Set at start, and
//! extendable once when a pre-started sandbox is handed to its user.

use instavm_protocol::AgentConfig;
use std::sync::{RwLock, RwLockReadGuard};

pub struct Env {
    pub vars: Vec<(String, String)>,
    pub workdir: String,
}

static ENV: RwLock<Env> = RwLock::new(Env {
    vars: Vec::new(),
    workdir: String::new(),
});

impl Env {
    /// The working directory, or `/` if the user removed it.
    pub fn workdir_or_root(&self) -> &str {
        if std::path::Path::new(&self.workdir).is_dir() {
            &self.workdir
        } else {
            "/"
        }
    }

    fn set(&mut self, key: String, value: String) {
        self.vars.retain(|(k, _)| *k != key);
        self.vars.push((key, value));
    }
}

pub fn init(cfg: &AgentConfig) {
    let mut env = ENV.write().unwrap_or_else(|e| e.into_inner());
    env.workdir = cfg.workdir.clone();
    let defaults = [
        (
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ),
        ("HOME", "/root"),
        ("USER", "root"),
        ("LANG", "C.UTF-8"),
        ("HOSTNAME", cfg.hostname.as_str()),
        ("PWD", cfg.workdir.as_str()),
    ];
    for (k, v) in defaults {
        env.set(k.into(), v.into());
    }
    for (k, v) in &cfg.env {
        env.set(k.clone(), v.clone());
    }
}

pub fn get() -> RwLockReadGuard<'static, Env> {
    ENV.read().unwrap_or_else(|e| e.into_inner())
}

/// Add or replace variables; returns them for the running interpreter to pick up.
pub fn extend(vars: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut env = ENV.write().unwrap_or_else(|e| e.into_inner());
    for (k, v) in &vars {
        env.set(k.clone(), v.clone());
    }
    vars
}
