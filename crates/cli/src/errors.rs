//! How a failed command is reported (spec/cli.md §1): `Error: ...` on stderr and exit 1,
//! with the official CLI's wording for each kind of failure.

use instavm_sdk::Error as SdkError;

/// Print the error the way the official CLI does.
pub fn report(err: &anyhow::Error) {
    match err.downcast_ref::<SdkError>() {
        Some(SdkError::Api { status: 401, .. }) => auth_hint("Invalid API key or session expired"),
        Some(SdkError::Api { status, detail }) => match status {
            // Forbidden and rate-limit errors carry the server's detail as their message.
            403 | 429 => eprintln!("Error: {detail}"),
            s if *s >= 500 => eprintln!("Error: Server error: {s}\nDetails: {detail}"),
            s => eprintln!("Error: HTTP {s}: {detail}"),
        },
        Some(SdkError::Network(e)) if e.is_timeout() => eprintln!("Error: Request timeout: {e}"),
        Some(SdkError::Network(e)) => eprintln!("Error: Connection failed: {}", chain(e)),
        Some(other) => eprintln!("Error: {other}"),
        None => match err.downcast_ref::<MissingKey>() {
            Some(missing) => auth_hint(&missing.to_string()),
            None => eprintln!("Error: {}", chain(err.as_ref())),
        },
    }
}

fn auth_hint(message: &str) {
    eprintln!("Error: {message}");
    eprintln!("Your API key is missing, expired, or has been revoked.");
    eprintln!("Run `instavm auth set-key` to store a valid key, or export INSTAVM_API_KEY.");
}

/// An error and its causes on one line, skipping causes whose text the message already holds
/// (many errors print their source as part of their own message).
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// No key in the flag, the environment or the config file.
#[derive(Debug, thiserror::Error)]
#[error("No InstaVM API key configured. Run `instavm auth set-key` or export INSTAVM_API_KEY.")]
pub struct MissingKey;
