//! The LLM cassette of a tape (spec/webhooks.md §2): every `llm_call` event's payload is also a
//! line of `<root>/<tape_id>/llm_call.jsonl`, the file the SDKs' replay clients read. Written
//! on this host only; a consumer elsewhere gets it by a shared mount or a copy.

use crate::state::AppState;
use serde_json::{json, Value};
use std::io::Write;

pub fn append(state: &AppState, tape_id: &str, step_id: u64, payload: &Value) {
    let Some(root) = state.tapes().cassette_root() else {
        return;
    };
    let dir = root.join(tape_id);
    let line = json!({"step_id": step_id, "kind": "llm_call", "payload": payload}).to_string();
    let written = std::fs::create_dir_all(&dir).and_then(|()| {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("llm_call.jsonl"))?;
        // One write per line: concurrent appends never interleave within a line.
        file.write_all(format!("{line}\n").as_bytes())
    });
    if let Err(err) = written {
        tracing::warn!(tape = %tape_id, dir = %dir.display(), error = %err, "writing the cassette failed");
    }
}

pub fn remove(state: &AppState, tape_id: &str) {
    let Some(root) = state.tapes().cassette_root() else {
        return;
    };
    let dir = root.join(tape_id);
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => {
            tracing::warn!(dir = %dir.display(), error = %err, "removing a cassette failed")
        }
    }
}
