//! Webhooks (spec/cli.md §6.13): endpoints, deliveries, replay, and `verify-signature`
//! (offline, spec/webhooks.md §1). Group alias `webhook`.

use super::RuntimeArgs;
use crate::output::emit;
use clap::{Args, Subcommand};
use instavm_sdk::webhooks::signature;
use instavm_sdk::{
    CreateWebhookRequest, DeliveryQuery, UpdateWebhookRequest, WebhookDeliveryPage, WebhookEndpoint,
};
use serde_json::json;
use std::io::Read;
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum WebhooksCommand {
    /// Create an endpoint; its signing secret is shown once.
    Create(CreateArgs),
    /// List endpoints.
    #[command(alias = "ls")]
    List(RuntimeArgs),
    /// Show one endpoint.
    Get(IdArgs),
    /// Change an endpoint (at least one field).
    Update(UpdateArgs),
    /// Disable an endpoint (a soft delete: `update --enable` turns it back on).
    #[command(alias = "rm")]
    Delete(IdArgs),
    /// Send a signed challenge to the endpoint's URL now.
    Verify(IdArgs),
    /// Replace the signing secret (the new one is shown once).
    RotateSecret(IdArgs),
    /// Queue a `webhook.test` delivery.
    Test(IdArgs),
    /// List deliveries, newest first.
    #[command(alias = "delivery")]
    Deliveries(DeliveriesArgs),
    /// Queue a delivery's event again.
    Replay(ReplayArgs),
    /// Check a captured delivery's signature offline (exit 0 valid, 1 invalid, 2 no header).
    VerifySignature(VerifySignatureArgs),
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    #[command(flatten)]
    pub rt: RuntimeArgs,
    pub url: String,
    #[arg(long)]
    pub description: Option<String>,
    /// An event-type glob such as `vm.*` (repeatable; default: every event).
    #[arg(long = "event")]
    pub event_patterns: Vec<String>,
    /// Seconds each attempt may take.
    #[arg(long)]
    pub timeout: Option<i64>,
    #[arg(long)]
    pub max_retries: Option<i64>,
}

#[derive(Args, Debug)]
pub struct IdArgs {
    #[command(flatten)]
    pub rt: RuntimeArgs,
    pub endpoint_id: String,
}

#[derive(Args, Debug)]
pub struct UpdateArgs {
    #[command(flatten)]
    pub rt: RuntimeArgs,
    pub endpoint_id: String,
    #[arg(long)]
    pub url: Option<String>,
    #[arg(long)]
    pub description: Option<String>,
    /// Replaces the list (repeatable).
    #[arg(long = "event")]
    pub event_patterns: Vec<String>,
    #[arg(long)]
    pub timeout: Option<i64>,
    #[arg(long)]
    pub max_retries: Option<i64>,
    #[arg(long, conflicts_with = "disable")]
    pub enable: bool,
    #[arg(long)]
    pub disable: bool,
}

#[derive(Args, Debug)]
pub struct DeliveriesArgs {
    #[command(flatten)]
    pub rt: RuntimeArgs,
    #[arg(long = "endpoint")]
    pub endpoint_id: Option<String>,
    #[arg(long)]
    pub status: Option<String>,
    #[arg(long)]
    pub event_type: Option<String>,
    #[arg(long)]
    pub cursor: Option<String>,
    #[arg(long)]
    pub limit: Option<i64>,
}

#[derive(Args, Debug)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub rt: RuntimeArgs,
    pub delivery_id: String,
}

#[derive(Args, Debug)]
pub struct VerifySignatureArgs {
    #[arg(long)]
    pub secret: String,
    /// `Name: value` (repeatable); `InstaVM-Signature` is required.
    #[arg(long)]
    pub header: Vec<String>,
    #[arg(long, conflicts_with = "body_file")]
    pub body: Option<String>,
    #[arg(long)]
    pub body_file: Option<std::path::PathBuf>,
    /// Seconds the timestamp may be off; -1 turns the check off.
    #[arg(long, default_value_t = signature::DEFAULT_TOLERANCE_SECONDS, allow_negative_numbers = true)]
    pub tolerance: i64,
    #[arg(short = 'j', long)]
    pub json: bool,
}

fn endpoint_lines(e: &WebhookEndpoint) -> Vec<String> {
    let mut lines = vec![
        format!("ID: {}", e.id),
        format!("URL: {}", e.url),
        format!("Status: {}", e.status),
        format!("Description: {}", e.description.as_deref().unwrap_or("-")),
    ];
    if !e.event_patterns.is_empty() {
        lines.push(format!("Event patterns: {}", e.event_patterns.join(", ")));
    }
    lines.push(format!(
        "Timeout: {} s, max retries: {}",
        e.timeout_seconds, e.max_retries
    ));
    if let Some(secret) = &e.secret {
        lines.push(format!("Signing secret: {secret}  (shown once)"));
    }
    lines.push(format!("Secret hint: {}", e.secret_hint));
    lines.push(format!("Created: {}", e.created_at.to_rfc3339()));
    lines
}

fn delivery_lines(page: &WebhookDeliveryPage) -> Vec<String> {
    if page.items.is_empty() {
        return vec!["(no deliveries)".into()];
    }
    let mut lines = vec![format!(
        "{:<28} {:<10} {:<28} {:>7}  CREATED",
        "DELIVERY", "STATUS", "EVENT", "ATTEMPT"
    )];
    for d in &page.items {
        lines.push(format!(
            "{:<28} {:<10} {:<28} {:>7}  {}",
            d.id,
            d.status,
            d.event_type,
            d.attempt_count,
            d.created_at.to_rfc3339()
        ));
    }
    if let Some(c) = &page.next_cursor {
        lines.push(format!("More: --cursor {c}"));
    }
    lines
}

pub async fn run(cmd: WebhooksCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        WebhooksCommand::Create(a) => {
            let req = CreateWebhookRequest {
                url: a.url,
                description: a.description,
                event_patterns: (!a.event_patterns.is_empty()).then_some(a.event_patterns),
                timeout_seconds: a.timeout,
                max_retries: a.max_retries,
            };
            let e = a.rt.client()?.create_webhook(&req).await?;
            emit(a.rt.json, &e, &endpoint_lines(&e))?;
        }
        WebhooksCommand::List(rt) => {
            let endpoints = rt.client()?.list_webhooks().await?;
            let mut lines = Vec::new();
            if endpoints.is_empty() {
                lines.push("(no webhook endpoints)".to_owned());
            } else {
                lines.push(format!(
                    "{:<28} {:<9} {:<40} DESCRIPTION",
                    "ID", "STATUS", "URL"
                ));
                for e in &endpoints {
                    lines.push(format!(
                        "{:<28} {:<9} {:<40} {}",
                        e.id,
                        e.status,
                        e.url,
                        e.description.as_deref().unwrap_or("-")
                    ));
                }
            }
            emit(rt.json, &json!({ "endpoints": endpoints }), &lines)?;
        }
        WebhooksCommand::Get(a) => {
            let e = a.rt.client()?.get_webhook(&a.endpoint_id).await?;
            emit(a.rt.json, &e, &endpoint_lines(&e))?;
        }
        WebhooksCommand::Update(a) => {
            let req = UpdateWebhookRequest {
                url: a.url,
                description: a.description,
                event_patterns: (!a.event_patterns.is_empty()).then_some(a.event_patterns),
                timeout_seconds: a.timeout,
                max_retries: a.max_retries,
                enabled: if a.enable {
                    Some(true)
                } else if a.disable {
                    Some(false)
                } else {
                    None
                },
            };
            if req == UpdateWebhookRequest::default() {
                anyhow::bail!(
                    "Nothing to update. Pass at least one field (e.g. --url, --description)."
                );
            }
            let e = a.rt.client()?.update_webhook(&a.endpoint_id, &req).await?;
            emit(a.rt.json, &e, &endpoint_lines(&e))?;
        }
        WebhooksCommand::Delete(a) => {
            let r = a.rt.client()?.delete_webhook(&a.endpoint_id).await?;
            emit(
                a.rt.json,
                &r,
                &[format!("Deleted webhook endpoint {}", a.endpoint_id)],
            )?;
        }
        WebhooksCommand::Verify(a) => {
            let r = a.rt.client()?.verify_webhook(&a.endpoint_id).await?;
            let mut line = format!("Endpoint {}: {}", a.endpoint_id, r.status);
            if let Some(err) = &r.error {
                line.push_str(&format!(" ({err})"));
            }
            emit(a.rt.json, &r, &[line])?;
        }
        WebhooksCommand::RotateSecret(a) => {
            let e = a.rt.client()?.rotate_webhook_secret(&a.endpoint_id).await?;
            let mut lines = vec![format!("Endpoint {} secret rotated.", a.endpoint_id)];
            if let Some(s) = &e.secret {
                lines.push(format!("New signing secret: {s}  (shown once)"));
            }
            emit(a.rt.json, &e, &lines)?;
        }
        WebhooksCommand::Test(a) => {
            let r = a.rt.client()?.test_webhook(&a.endpoint_id).await?;
            emit(
                a.rt.json,
                &r,
                &[format!(
                    "Test event enqueued for endpoint {}",
                    a.endpoint_id
                )],
            )?;
        }
        WebhooksCommand::Deliveries(a) => {
            let q = DeliveryQuery {
                endpoint_id: a.endpoint_id,
                status: a.status,
                event_type: a.event_type,
                cursor: a.cursor,
                limit: a.limit,
            };
            let page = a.rt.client()?.webhook_deliveries(&q).await?;
            emit(a.rt.json, &page, &delivery_lines(&page))?;
        }
        WebhooksCommand::Replay(a) => {
            let r =
                a.rt.client()?
                    .replay_webhook_delivery(&a.delivery_id)
                    .await?;
            emit(
                a.rt.json,
                &r,
                &[format!("Replay enqueued for delivery {}", a.delivery_id)],
            )?;
        }
        WebhooksCommand::VerifySignature(a) => return verify_signature(a),
    }
    Ok(ExitCode::SUCCESS)
}

fn verify_signature(a: VerifySignatureArgs) -> anyhow::Result<ExitCode> {
    let mut headers = Vec::new();
    for raw in &a.header {
        let Some((name, value)) = raw.split_once(':') else {
            anyhow::bail!("Invalid --header value {raw:?}. Expected 'Name: value'.");
        };
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    // Before reading stdin, so a missing flag never looks like a hang.
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case(signature::HEADER))
    {
        eprintln!(
            "missing required header: pass --header 'InstaVM-Signature: t=…,v1=…' (repeat --header for each header you want to validate against)."
        );
        return Ok(ExitCode::from(2));
    }
    let body = match (&a.body_file, &a.body) {
        (Some(path), _) => std::fs::read(path)?,
        (None, Some(text)) => text.clone().into_bytes(),
        (None, None) => {
            let mut buf = Vec::new();
            std::io::stdin().read_to_end(&mut buf)?;
            buf
        }
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    match signature::verify(&headers, &body, &a.secret, a.tolerance, now) {
        Ok(event) => {
            let kind = event
                .get("event_type")
                .or_else(|| event.get("type"))
                .and_then(|v| v.as_str())
                .unwrap_or("-")
                .to_owned();
            let id = event
                .get("id")
                .or_else(|| event.get("event_id"))
                .and_then(|v| v.as_str())
                .unwrap_or("-")
                .to_owned();
            emit(
                a.json,
                &json!({"ok": true, "event": event}),
                &[format!("Signature OK: {kind} ({id})")],
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            if a.json {
                println!(
                    "{}",
                    json!({"ok": false, "reason": e.reason, "message": e.message})
                );
            } else {
                eprintln!(
                    "Signature verification failed ({}): {}",
                    e.reason, e.message
                );
            }
            Ok(ExitCode::from(1))
        }
    }
}
