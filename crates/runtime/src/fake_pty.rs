//! The fake runtime's terminals: each one echoes its input back, like `cat` on a terminal, and
//! exits with status N when it receives the line `exit N`.

use crate::*;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::mpsc;

#[derive(Default)]
pub(crate) struct FakeTerminals {
    ptys: Arc<Mutex<HashMap<(SandboxId, String), FakePty>>>,
}

struct FakePty {
    info: PtyInfo,
    /// Bumped by each attach, so an older stream knows it was taken over.
    generation: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl FakeTerminals {
    pub fn open(&self, sb: &SandboxId, req: PtyRequest) -> Result<PtyInfo> {
        let mut ptys = lock(&self.ptys);
        let key = (sb.clone(), req.id.clone());
        if ptys.contains_key(&key) {
            return Err(RuntimeError::AlreadyExists(format!(
                "terminal {:?}",
                req.id
            )));
        }
        let info = PtyInfo {
            id: req.id,
            argv: req.command.argv(),
            pid: 100 + ptys.len() as i32,
            cols: req.cols,
            rows: req.rows,
            created_at: Utc::now(),
            exit_code: None,
            attached: false,
        };
        ptys.insert(
            key,
            FakePty {
                info: info.clone(),
                generation: 0,
            },
        );
        Ok(info)
    }

    pub fn list(&self, sb: &SandboxId) -> Vec<PtyInfo> {
        let mut all: Vec<PtyInfo> = lock(&self.ptys)
            .iter()
            .filter(|((s, _), _)| s == sb)
            .map(|(_, p)| p.info.clone())
            .collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    fn with<T>(&self, sb: &SandboxId, id: &str, f: impl FnOnce(&mut FakePty) -> T) -> Result<T> {
        let mut ptys = lock(&self.ptys);
        let pty = ptys
            .get_mut(&(sb.clone(), id.to_owned()))
            .ok_or_else(|| RuntimeError::PtyNotFound(id.to_owned()))?;
        Ok(f(pty))
    }

    pub fn get(&self, sb: &SandboxId, id: &str) -> Result<PtyInfo> {
        self.with(sb, id, |p| p.info.clone())
    }

    pub fn resize(&self, sb: &SandboxId, id: &str, cols: u16, rows: u16) -> Result<()> {
        self.with(sb, id, |p| {
            p.info.cols = cols;
            p.info.rows = rows;
        })
    }

    pub fn kill(&self, sb: &SandboxId, id: &str) -> Result<()> {
        lock(&self.ptys)
            .remove(&(sb.clone(), id.to_owned()))
            .map(drop)
            .ok_or_else(|| RuntimeError::PtyNotFound(id.to_owned()))
    }

    /// Forget a destroyed sandbox's terminals.
    pub fn forget(&self, sb: &SandboxId) {
        lock(&self.ptys).retain(|(s, _), _| s != sb);
    }

    pub fn attach(&self, sb: &SandboxId, id: &str) -> Result<PtyStream> {
        let (info, generation) = self.with(sb, id, |p| {
            p.generation += 1;
            p.info.attached = p.info.exit_code.is_none();
            (p.info.clone(), p.generation)
        })?;
        let (out_tx, out_rx) = mpsc::channel(16);
        let (in_tx, mut in_rx) = mpsc::channel::<PtyInput>(16);
        let ptys = self.ptys.clone();
        let key = (sb.clone(), id.to_owned());
        tokio::spawn(async move {
            let current = |ptys: &Mutex<HashMap<_, FakePty>>| {
                lock(ptys)
                    .get(&key)
                    .is_some_and(|p| p.generation == generation)
            };
            if let Some(code) = info.exit_code {
                let _ = out_tx.send(PtyEvent::Exit(code)).await;
                return;
            }
            let mut line = Vec::new();
            while let Some(input) = in_rx.recv().await {
                if !current(&ptys) {
                    return; // taken over or killed
                }
                let PtyInput::Data(bytes) = input else {
                    continue;
                };
                for &b in &bytes {
                    line.push(b);
                    if b == b'\n' {
                        let text = String::from_utf8_lossy(&line).trim().to_string();
                        if let Some(code) = text.strip_prefix("exit ").and_then(|c| c.parse().ok())
                        {
                            if let Some(p) = lock(&ptys).get_mut(&key) {
                                p.info.exit_code = Some(code);
                                p.info.attached = false;
                            }
                            let _ = out_tx.send(PtyEvent::Output(bytes.clone())).await;
                            let _ = out_tx.send(PtyEvent::Exit(code)).await;
                            return;
                        }
                        line.clear();
                    }
                }
                if out_tx.send(PtyEvent::Output(bytes)).await.is_err() {
                    break;
                }
            }
            if let Some(p) = lock(&ptys).get_mut(&key) {
                if p.generation == generation {
                    p.info.attached = false;
                }
            }
        });
        Ok(PtyStream {
            info,
            output: out_rx,
            input: in_tx,
        })
    }
}
