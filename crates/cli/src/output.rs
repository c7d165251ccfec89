//! Printing: one line of compact JSON with `--json`, plain lines otherwise, and a spinner on
//! stderr for slow steps when stderr is a terminal (never in JSON mode).

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::io::IsTerminal;
use std::time::Duration;

/// Print `payload` as one JSON line, or `lines` as text.
pub fn emit(json: bool, payload: &impl Serialize, lines: &[String]) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(payload)?);
    } else {
        for line in lines {
            println!("{line}");
        }
    }
    Ok(())
}

/// A spinner that lasts until dropped; invisible when stderr is not a terminal, in JSON
/// mode, or with `NO_COLOR` / `TERM=dumb`.
pub struct Spinner(Option<ProgressBar>);

impl Spinner {
    pub fn start(json: bool, message: &str) -> Spinner {
        let fancy = !json
            && std::io::stderr().is_terminal()
            && std::env::var_os("NO_COLOR").is_none()
            && std::env::var("TERM").map_or(true, |t| t != "dumb");
        if !fancy {
            return Spinner(None);
        }
        let bar = ProgressBar::new_spinner();
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} {elapsed}") {
            bar.set_style(style);
        }
        bar.set_message(message.to_owned());
        bar.enable_steady_tick(Duration::from_millis(100));
        Spinner(Some(bar))
    }

    /// True when it draws on a terminal (otherwise callers print plain progress lines).
    pub fn is_active(&self) -> bool {
        self.0.is_some()
    }

    pub fn set_message(&self, message: &str) {
        if let Some(bar) = &self.0 {
            bar.set_message(message.to_owned());
        }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

/// `value`, or `-` when it is missing or blank.
pub fn display(value: Option<impl ToString>) -> String {
    value
        .map(|v| v.to_string())
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "-".into())
}

/// An aligned table with a dashed line under the header, indented by two spaces.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> Vec<String> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("  {}", padded.join("  ")).trim_end().to_owned()
    };
    let mut out = vec![line(headers.iter().map(|h| h.to_string()).collect())];
    out.push(line(widths.iter().map(|w| "-".repeat(*w)).collect()));
    out.extend(rows.iter().map(|r| line(r.clone())));
    out
}
