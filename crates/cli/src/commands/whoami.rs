//! `instavm whoami`: the account and its SSH keys.

use super::RuntimeArgs;
use crate::output::{display, emit, table, Spinner};
use serde_json::json;

pub async fn run(args: RuntimeArgs) -> anyhow::Result<()> {
    let client = args.client()?;
    let spinner = Spinner::start(args.json, "Fetching account");
    let user = client.me().await?;
    let keys = client.list_ssh_keys().await?;
    drop(spinner);
    let payload = json!({
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "is_verified": user.is_verified,
        "ssh_keys": keys,
    });
    let mut lines = vec![
        "Account".to_owned(),
        format!("  Email: {}", display(Some(&user.email))),
        format!("  User ID: {}", user.id),
        format!("  Name: {}", display(user.name.as_ref())),
        format!(
            "  Verified: {}",
            if user.is_verified { "yes" } else { "no" }
        ),
        String::new(),
        format!("SSH Keys ({})", keys.len()),
    ];
    if keys.is_empty() {
        lines.push("  none".into());
    } else {
        let rows: Vec<Vec<String>> = keys
            .iter()
            .map(|k| {
                vec![
                    k.id.to_string(),
                    k.fingerprint.clone(),
                    display(k.comment.as_ref()),
                ]
            })
            .collect();
        lines.extend(table(&["ID", "Fingerprint", "Comment"], &rows));
    }
    emit(args.json, &payload, &lines)
}
