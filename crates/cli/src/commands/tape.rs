//! Tapes (spec/cli.md §6.5): `tape ls|start|stop|get|events|diff|branch|play|lanes|export|rm`,
//! with the official CLI's text output and `--json` shapes.

use super::RuntimeArgs;
use crate::errors::MissingKey;
use crate::output::{display, emit, table};
use anyhow::Context;
use chrono::SecondsFormat;
use clap::{Args, Subcommand};
use instavm_sdk::{
    BranchTapeRequest, Client, StartTapeRequest, TapeEvent, TapeEventsQuery, TapeListQuery,
    TapeRecord,
};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum TapeCommand {
    /// List tapes.
    #[command(alias = "list")]
    Ls(ListArgs),
    /// Start recording a tape for a session.
    Start(StartArgs),
    /// Stop a recording tape.
    Stop(IdArgs),
    /// Get tape metadata.
    Get(IdArgs),
    /// List events for a tape.
    Events(EventsArgs),
    /// Show the filesystem diff between two steps.
    Diff(DiffArgs),
    /// Branch a tape at a step: a new VM from the state after that step.
    Branch(BranchArgs),
    /// Print a scrubber-style timeline for a tape.
    Play(PlayArgs),
    /// Show the event count per lane (kind).
    Lanes(IdArgs),
    /// Export a tape's metadata and events as JSON.
    Export(ExportArgs),
    /// Delete a tape.
    #[command(alias = "delete")]
    Rm(IdArgs),
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub rt: RuntimeArgs,
    /// Filter by session ID.
    #[arg(long)]
    pub session: Option<String>,
    /// Filter by VM ID.
    #[arg(long)]
    pub vm: Option<String>,
    /// Filter by status.
    #[arg(long, value_parser = ["recording", "stopped", "failed", "expired"])]
    pub status: Option<String>,
    /// Maximum tapes to return.
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
}

#[derive(Args, Debug)]
pub struct StartArgs {
    #[command(flatten)]
    pub rt: RuntimeArgs,
    pub session_id: String,
    /// Capture HTTP request and response bodies (LLM cassettes).
    #[arg(long)]
    pub record_egress_content: bool,
    /// Take no filesystem checkpoints per step.
    #[arg(long)]
    pub no_record_fs: bool,
    /// Retention period in days.
    #[arg(long, default_value_t = 7)]
    pub retention_days: u32,
}

#[derive(Args, Debug)]
pub struct IdArgs {
    #[command(flatten)]
    pub rt: RuntimeArgs,
    pub tape_id: String,
}

#[derive(Args, Debug)]
pub struct EventsArgs {
    #[command(flatten)]
    pub rt: RuntimeArgs,
    pub tape_id: String,
    /// Only return events after this step.
    #[arg(long)]
    pub after_step: Option<u64>,
    /// Event kind filter.
    #[arg(long)]
    pub kind: Option<String>,
    /// Maximum events to return.
    #[arg(long, default_value_t = 200)]
    pub limit: u32,
}

#[derive(Args, Debug)]
pub struct DiffArgs {
    #[command(flatten)]
    pub rt: RuntimeArgs,
    pub tape_id: String,
    /// Starting step.
    #[arg(long = "from")]
    pub from_step: u64,
    /// Ending step.
    #[arg(long = "to")]
    pub to_step: u64,
}

#[derive(Args, Debug)]
pub struct BranchArgs {
    #[command(flatten)]
    pub rt: RuntimeArgs,
    pub tape_id: String,
    /// Step to branch from.
    #[arg(long = "at")]
    pub at_step: u64,
    #[arg(long, value_parser = ["live", "replay"], default_value = "live")]
    pub mode: String,
}

#[derive(Args, Debug)]
pub struct PlayArgs {
    #[command(flatten)]
    pub rt: RuntimeArgs,
    pub tape_id: String,
    /// Maximum events to fetch.
    #[arg(long, default_value_t = 200)]
    pub limit: u32,
    /// Show this many most-recent events under the timeline (0: all, as the official CLI).
    #[arg(long, default_value_t = 20)]
    pub tail: usize,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    pub rt: RuntimeArgs,
    pub tape_id: String,
    /// Write the bundle to this file (otherwise print a summary).
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

pub async fn run(cmd: TapeCommand) -> anyhow::Result<()> {
    match cmd {
        TapeCommand::Ls(a) => {
            let query = TapeListQuery {
                limit: Some(a.limit),
                offset: Some(0),
                session_id: a.session.clone(),
                vm_id: a.vm.clone(),
                status: a.status.clone(),
            };
            let tapes = a.rt.client()?.list_tapes(&query).await?;
            emit(
                a.rt.json,
                &json!({ "tapes": tapes }),
                &tape_list_lines(&tapes),
            )
        }
        TapeCommand::Start(a) => {
            let req = StartTapeRequest {
                record_egress_content: Some(a.record_egress_content),
                record_fs: Some(!a.no_record_fs),
                retention_days: Some(a.retention_days),
            };
            let tape = a.rt.client()?.start_tape(&a.session_id, &req).await?;
            emit(a.rt.json, &tape, &tape_info_lines(&tape))
        }
        TapeCommand::Stop(a) => {
            let tape = a.rt.client()?.stop_tape(&a.tape_id).await?;
            emit(a.rt.json, &tape, &tape_info_lines(&tape))
        }
        TapeCommand::Get(a) => {
            let tape = a.rt.client()?.tape(&a.tape_id).await?;
            emit(a.rt.json, &tape, &tape_info_lines(&tape))
        }
        TapeCommand::Events(a) => {
            let query = TapeEventsQuery {
                limit: Some(a.limit),
                after_step: a.after_step,
                kind: a.kind.clone(),
            };
            let events = a.rt.client()?.tape_events(&a.tape_id, &query).await?;
            let payload = json!({ "tape_id": a.tape_id, "events": events });
            emit(a.rt.json, &payload, &tape_events_lines(&events))
        }
        TapeCommand::Diff(a) => {
            let client = a.rt.client()?;
            let diff = client
                .tape_diff(&a.tape_id, a.from_step, a.to_step, None)
                .await?;
            let paths = &diff.changed_paths;
            let mut lines = vec![
                format!("Tape: {}", display(Some(&diff.tape_id))),
                format!("Steps: {} -> {}", diff.from_step, diff.to_step),
                format!("Mode: {}", display(Some(&diff.mode))),
                String::new(),
                format!("Changed paths ({})", paths.len()),
            ];
            lines.extend(paths.iter().map(|p| format!("  {p}")));
            emit(a.rt.json, &diff, &lines)
        }
        TapeCommand::Branch(a) => {
            let settings = a.rt.settings()?;
            let key = settings.api_key.clone().ok_or(MissingKey)?;
            let client = Client::new(&settings.base_url, Some(key))?;
            let req = BranchTapeRequest {
                at_step: Some(a.at_step),
                mode: Some(a.mode.clone()),
            };
            let branch = client.branch_tape(&a.tape_id, &req).await?;
            let parent = Some(&branch.parent_tape_id).filter(|p| !p.is_empty());
            let mut lines = vec![
                format!("Tape: {}", display(Some(&branch.tape_id))),
                format!(
                    "Parent: {} @ step {}",
                    parent.unwrap_or(&a.tape_id),
                    branch.parent_step_id
                ),
                format!("Status: {}", branch.status.as_str()),
            ];
            if !branch.vm_id.is_empty() {
                lines.push(format!("SSH: ssh {}@{}", branch.vm_id, settings.ssh_host));
            }
            emit(a.rt.json, &branch, &lines)
        }
        TapeCommand::Play(a) => {
            let client = a.rt.client()?;
            let tape = client.tape(&a.tape_id).await?;
            let query = TapeEventsQuery {
                limit: Some(a.limit),
                ..Default::default()
            };
            let events = client.tape_events(&a.tape_id, &query).await?;
            // As the official CLI: the timeline is drawn without lane counts if they fail.
            let lanes = match client.tape_lanes(&a.tape_id).await {
                Ok(l) => l.lanes,
                Err(_) => BTreeMap::new(),
            };
            let payload = json!({ "tape": tape, "events": events, "lanes": lanes });
            emit(
                a.rt.json,
                &payload,
                &play_lines(&tape, &events, &lanes, a.tail),
            )
        }
        TapeCommand::Lanes(a) => {
            let lanes = a.rt.client()?.tape_lanes(&a.tape_id).await?;
            let mut counts: Vec<(&String, &u64)> = lanes.lanes.iter().collect();
            counts.sort_by(|x, y| y.1.cmp(x.1));
            let mut lines = vec![format!("Tape: {}", a.tape_id), "Lanes:".to_owned()];
            lines.extend(counts.iter().map(|(k, n)| format!("  {k:<24} {n}")));
            emit(a.rt.json, &lanes, &lines)
        }
        TapeCommand::Export(a) => {
            let bundle = a.rt.client()?.export_tape(&a.tape_id).await?;
            let lines = match &a.output {
                Some(path) => {
                    let mut text = serde_json::to_string_pretty(&bundle)?;
                    text.push('\n');
                    std::fs::write(path, text)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    vec![format!("Exported tape {} to {}", a.tape_id, path.display())]
                }
                None => vec![
                    format!("Tape: {}", a.tape_id),
                    format!(
                        "Format: {}",
                        display(bundle.get("format").and_then(Value::as_str))
                    ),
                    format!(
                        "Events: {}",
                        bundle
                            .get("events")
                            .and_then(Value::as_array)
                            .map_or(0, Vec::len)
                    ),
                ],
            };
            emit(a.rt.json, &bundle, &lines)
        }
        TapeCommand::Rm(a) => {
            let res = a.rt.client()?.delete_tape(&a.tape_id).await?;
            let mut payload = json!({ "tape_id": a.tape_id });
            if let (Some(obj), Value::Object(rest)) =
                (payload.as_object_mut(), serde_json::to_value(&res)?)
            {
                obj.extend(rest);
            }
            emit(
                a.rt.json,
                &payload,
                &[format!("Deleted tape {}", a.tape_id)],
            )
        }
    }
}

fn tape_list_lines(tapes: &[TapeRecord]) -> Vec<String> {
    if tapes.is_empty() {
        return vec!["No tapes.".into()];
    }
    let rows: Vec<Vec<String>> = tapes
        .iter()
        .map(|t| {
            vec![
                display(Some(&t.id)),
                t.status.as_str().to_owned(),
                display(Some(&t.session_id)),
                display(t.vm_id.as_ref()),
                t.total_steps.to_string(),
            ]
        })
        .collect();
    let mut out = vec![format!("Tapes ({})", tapes.len()), String::new()];
    out.extend(table(&["ID", "Status", "Session", "VM", "Steps"], &rows));
    out
}

fn tape_info_lines(tape: &TapeRecord) -> Vec<String> {
    vec![
        format!("Tape: {}", display(Some(&tape.id))),
        format!("Status: {}", tape.status.as_str()),
        format!("Session: {}", display(Some(&tape.session_id))),
        format!("VM: {}", display(tape.vm_id.as_ref())),
        format!("Steps: {}", tape.total_steps),
    ]
}

fn tape_events_lines(events: &[TapeEvent]) -> Vec<String> {
    if events.is_empty() {
        return vec!["No tape events.".into()];
    }
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            vec![
                e.step_id.to_string(),
                display(Some(&e.kind)),
                e.ts.to_rfc3339_opts(SecondsFormat::AutoSi, true),
                display(e.payload.get("status").map(text_of)),
            ]
        })
        .collect();
    let mut out = vec![format!("Tape events ({})", events.len()), String::new()];
    out.extend(table(&["Step", "Kind", "Timestamp", "Status"], &rows));
    out
}

/// The lanes the official CLI draws, in its order, with its glyphs. Kinds it does not know
/// (the server's `execute`, `upload`, ...) get a lane of their own after these, drawn with `•`,
/// so a tape of plain executions still shows a timeline.
const LANES: [(&str, &str); 8] = [
    ("tool_call_start", "▶"),
    ("tool_call_end", "■"),
    ("fs_summary", "◆"),
    ("http_egress", "↗"),
    ("llm_call", "✦"),
    ("vnc_marker", "▣"),
    ("agent_log", "·"),
    ("branch", "⎇"),
];
const OTHER_GLYPH: &str = "•";

fn glyph(kind: &str) -> &'static str {
    LANES
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or(OTHER_GLYPH, |(_, g)| g)
}

/// `tape play`'s text: a header, the lane counts, one track per kind with each event placed at
/// its step scaled to the track's width (20 to 80 columns), then the last `tail` events.
pub fn play_lines(
    tape: &TapeRecord,
    events: &[TapeEvent],
    lanes: &BTreeMap<String, u64>,
    tail: usize,
) -> Vec<String> {
    let mut kinds: Vec<&str> = LANES.iter().map(|(k, _)| *k).collect();
    let mut others: Vec<&str> = events
        .iter()
        .map(|e| e.kind.as_str())
        .chain(lanes.keys().map(String::as_str))
        .filter(|k| !kinds.contains(k))
        .collect();
    others.sort_unstable();
    others.dedup();
    kinds.extend(others);

    let mut lines = vec![format!(
        "Tape: {}  status={}  steps={}",
        display(Some(&tape.id)),
        tape.status.as_str(),
        tape.total_steps
    )];
    let summary: Vec<String> = kinds
        .iter()
        .filter_map(|k| {
            lanes
                .get(*k)
                .filter(|n| **n > 0)
                .map(|n| format!("{k}={n}"))
        })
        .collect();
    if !summary.is_empty() {
        lines.push(format!("Lanes: {}", summary.join("  ")));
    }
    lines.push(String::new());
    if events.is_empty() {
        lines.push("(no events)".into());
        return lines;
    }

    let max_step = events.iter().map(|e| e.step_id).max().unwrap_or(0);
    let width = (max_step.saturating_add(2)).clamp(20, 80) as usize;
    for kind in &kinds {
        let mut track = vec![" "; width];
        let mut any = false;
        for e in events.iter().filter(|e| e.kind == *kind) {
            // The official CLI's float scaling, so both place a step in the same column.
            let scaled = e.step_id as f64 / max_step.max(1) as f64 * (width - 1) as f64;
            track[(scaled as usize).min(width - 1)] = glyph(kind);
            any = true;
        }
        if any {
            lines.push(format!("  {kind:<16} |{}|", track.concat()));
        }
    }
    lines.push(String::new());
    // Python's `events[-tail:]`: a tail of 0 shows every event.
    let shown = if tail == 0 || tail >= events.len() {
        events
    } else {
        &events[events.len() - tail..]
    };
    for e in shown {
        let p = &e.payload;
        let preview = if let Some(name) = p.get("name") {
            format!(" name={}", text_of(name))
        } else if let Some(cmd) = p.get("command") {
            format!(" cmd={}", text_of(cmd).chars().take(40).collect::<String>())
        } else if let Some(kind) = p.get("kind") {
            format!(" kind={}", text_of(kind))
        } else {
            String::new()
        };
        lines.push(format!(
            "  step {:>4}  {} {}{preview}",
            e.step_id,
            glyph(&e.kind),
            e.kind
        ));
    }
    lines
}

/// A JSON string as itself, anything else as its JSON text.
fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use clap::Parser;
    use instavm_sdk::TapeStatus;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(subcommand)]
        tape: TapeCommand,
    }

    fn parse(args: &[&str]) -> Result<TapeCommand, clap::Error> {
        Cli::try_parse_from(std::iter::once("tape").chain(args.iter().copied())).map(|c| c.tape)
    }

    #[test]
    fn ls_flags_defaults_and_alias() {
        let TapeCommand::Ls(a) = parse(&["list"]).unwrap() else {
            panic!()
        };
        assert_eq!((a.limit, a.session, a.vm, a.status), (50, None, None, None));
        let TapeCommand::Ls(a) = parse(&[
            "ls",
            "--session",
            "s",
            "--vm",
            "v",
            "--status",
            "stopped",
            "--limit",
            "3",
            "-j",
        ])
        .unwrap() else {
            panic!()
        };
        assert_eq!(a.session.as_deref(), Some("s"));
        assert_eq!(a.vm.as_deref(), Some("v"));
        assert_eq!(a.status.as_deref(), Some("stopped"));
        assert_eq!(a.limit, 3);
        assert!(a.rt.json);
        assert!(parse(&["ls", "--status", "paused"]).is_err());
    }

    #[test]
    fn start_flags_and_defaults() {
        let TapeCommand::Start(a) = parse(&["start", "sess"]).unwrap() else {
            panic!()
        };
        assert_eq!(a.session_id, "sess");
        assert!(!a.record_egress_content && !a.no_record_fs);
        assert_eq!(a.retention_days, 7);
        let TapeCommand::Start(a) = parse(&[
            "start",
            "sess",
            "--record-egress-content",
            "--no-record-fs",
            "--retention-days",
            "2",
        ])
        .unwrap() else {
            panic!()
        };
        assert!(a.record_egress_content && a.no_record_fs);
        assert_eq!(a.retention_days, 2);
        assert!(parse(&["start"]).is_err());
    }

    #[test]
    fn events_flags_and_defaults() {
        let TapeCommand::Events(a) = parse(&["events", "t"]).unwrap() else {
            panic!()
        };
        assert_eq!((a.limit, a.after_step, a.kind), (200, None, None));
        let TapeCommand::Events(a) = parse(&[
            "events",
            "t",
            "--after-step",
            "4",
            "--kind",
            "llm_call",
            "--limit",
            "9",
        ])
        .unwrap() else {
            panic!()
        };
        assert_eq!(a.after_step, Some(4));
        assert_eq!(a.kind.as_deref(), Some("llm_call"));
        assert_eq!(a.limit, 9);
    }

    #[test]
    fn diff_needs_from_and_to() {
        let TapeCommand::Diff(a) = parse(&["diff", "t", "--from", "1", "--to", "5"]).unwrap()
        else {
            panic!()
        };
        assert_eq!((a.tape_id.as_str(), a.from_step, a.to_step), ("t", 1, 5));
        assert!(parse(&["diff", "t", "--from", "1"]).is_err());
        assert!(parse(&["diff", "t", "--to", "1"]).is_err());
        assert!(parse(&["diff", "t", "--from", "x", "--to", "1"]).is_err());
    }

    #[test]
    fn branch_needs_at_and_defaults_to_live() {
        let TapeCommand::Branch(a) = parse(&["branch", "t", "--at", "3"]).unwrap() else {
            panic!()
        };
        assert_eq!((a.at_step, a.mode.as_str()), (3, "live"));
        let TapeCommand::Branch(a) =
            parse(&["branch", "t", "--at", "3", "--mode", "replay"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(a.mode, "replay");
        assert!(parse(&["branch", "t"]).is_err());
        assert!(parse(&["branch", "t", "--at", "3", "--mode", "fork"]).is_err());
    }

    #[test]
    fn play_export_and_the_id_commands() {
        let TapeCommand::Play(a) = parse(&["play", "t"]).unwrap() else {
            panic!()
        };
        assert_eq!((a.limit, a.tail), (200, 20));
        let TapeCommand::Export(a) = parse(&["export", "t", "--output", "b.json"]).unwrap() else {
            panic!()
        };
        assert_eq!(a.output, Some(PathBuf::from("b.json")));
        for cmd in ["stop", "get", "lanes", "rm", "delete"] {
            assert!(parse(&[cmd, "t"]).is_ok(), "{cmd}");
            assert!(parse(&[cmd]).is_err(), "{cmd} without an id");
        }
    }

    fn tape() -> TapeRecord {
        let at = Utc.with_ymd_and_hms(2026, 12, 2, 12, 0, 0).unwrap();
        TapeRecord {
            id: "tape_1".into(),
            tape_id: "tape_1".into(),
            status: TapeStatus::Stopped,
            session_id: "s".into(),
            vm_id: Some("vm".into()),
            total_steps: 10,
            record_fs: true,
            record_egress_content: false,
            retention_days: 7,
            parent_tape_id: None,
            parent_step_id: None,
            created_at: at,
            stopped_at: None,
            expires_at: at,
            error: None,
        }
    }

    fn event(step_id: u64, kind: &str, payload: Value) -> TapeEvent {
        TapeEvent {
            step_id,
            kind: kind.into(),
            ts: Utc.with_ymd_and_hms(2026, 12, 2, 12, 0, 0).unwrap()
                + chrono::Duration::seconds(step_id as i64),
            payload,
            parent_step_id: None,
            checkpoint_id: None,
        }
    }

    #[test]
    fn play_draws_lanes_and_the_tail() {
        let events = vec![
            event(1, "tool_call_start", json!({"name": "python_exec"})),
            event(2, "execute", json!({"command": "x".repeat(50)})),
            event(5, "llm_call", json!({"kind": "chat"})),
            event(
                9,
                "tool_call_end",
                json!({"name": "python_exec", "ok": true}),
            ),
            event(10, "fs_summary", json!({})),
        ];
        let lanes = BTreeMap::from([
            ("tool_call_start".to_owned(), 1),
            ("tool_call_end".to_owned(), 1),
            ("llm_call".to_owned(), 1),
            ("fs_summary".to_owned(), 1),
            ("execute".to_owned(), 1),
            ("agent_log".to_owned(), 0),
        ]);
        let lines = play_lines(&tape(), &events, &lanes, 3);
        // Width 20 (max step 10 + 2 is under the minimum): step s lands in column s/10*19.
        let track = |col: usize, glyph: &str| {
            let mut t = vec![" "; 20];
            t[col] = glyph;
            t.concat()
        };
        let expected = vec![
            "Tape: tape_1  status=stopped  steps=10".to_owned(),
            "Lanes: tool_call_start=1  tool_call_end=1  fs_summary=1  llm_call=1  execute=1"
                .to_owned(),
            String::new(),
            format!("  tool_call_start  |{}|", track(1, "▶")),
            format!("  tool_call_end    |{}|", track(17, "■")),
            format!("  fs_summary       |{}|", track(19, "◆")),
            format!("  llm_call         |{}|", track(9, "✦")),
            format!("  execute          |{}|", track(3, "•")),
            String::new(),
            "  step    5  ✦ llm_call kind=chat".to_owned(),
            "  step    9  ■ tool_call_end name=python_exec".to_owned(),
            "  step   10  ◆ fs_summary".to_owned(),
        ];
        assert_eq!(lines, expected);

        // A tail of 0 (or more than there are) lists every event; `command` is cut at 40.
        let all = play_lines(&tape(), &events, &BTreeMap::new(), 0);
        assert_eq!(all[1], "", "no Lanes line without counts");
        assert_eq!(all.len(), 1 + 1 + 5 + 1 + 5);
        assert_eq!(
            all[9],
            format!("  step    2  • execute cmd={}", "x".repeat(40))
        );
        assert_eq!(play_lines(&tape(), &events, &BTreeMap::new(), 99), all);
    }

    #[test]
    fn play_with_many_steps_caps_the_width_and_without_events_says_so() {
        let events = vec![
            event(0, "agent_log", json!({})),
            event(500, "branch", json!({})),
        ];
        let lines = play_lines(&tape(), &events, &BTreeMap::new(), 20);
        assert_eq!(
            lines[2],
            format!("  agent_log        |·{}|", " ".repeat(79))
        );
        assert_eq!(
            lines[3],
            format!("  branch           |{}⎇|", " ".repeat(79))
        );
        let empty = play_lines(&tape(), &[], &BTreeMap::new(), 20);
        assert_eq!(
            empty,
            vec![
                "Tape: tape_1  status=stopped  steps=10".to_owned(),
                String::new(),
                "(no events)".to_owned()
            ]
        );
    }

    #[test]
    fn list_and_events_text() {
        assert_eq!(tape_list_lines(&[]), vec!["No tapes."]);
        assert_eq!(
            tape_list_lines(&[tape()]),
            vec![
                "Tapes (1)",
                "",
                "  ID      Status   Session  VM  Steps",
                "  ------  -------  -------  --  -----",
                "  tape_1  stopped  s        vm  10",
            ]
        );
        assert_eq!(tape_events_lines(&[]), vec!["No tape events."]);
        let lines = tape_events_lines(&[event(3, "execute", json!({"status": "ok"}))]);
        assert_eq!(lines[4], "  3     execute  2026-12-02T12:00:03Z  ok");
    }
}
