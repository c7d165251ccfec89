//! The signature contract of spec/webhooks.md §1: `InstaVM-Signature: t=<unix seconds>,v1=<hex
//! HMAC-SHA256 of "<t>.<body>" keyed by the secret's UTF-8 bytes, whsec_ prefix included>`.

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const HEADER: &str = "InstaVM-Signature";

/// The lowercase hex digest of `<timestamp>.<body>`.
pub fn digest(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The header value for a body sent at `timestamp` (canonical decimal seconds).
pub fn header_value(secret: &str, timestamp: i64, body: &[u8]) -> String {
    format!("t={timestamp},v1={}", digest(secret, timestamp, body))
}

/// Whether `event_type` matches one of the endpoint's glob patterns (`*` any run of
/// characters, `?` one character; `*` alone matches everything).
pub fn matches(patterns: &[String], event_type: &str) -> bool {
    patterns
        .iter()
        .any(|p| glob(p.as_bytes(), event_type.as_bytes()))
}

fn glob(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => glob(&p[1..], s) || (!s.is_empty() && glob(p, &s[1..])),
        (Some(b'?'), Some(_)) => glob(&p[1..], &s[1..]),
        (Some(a), Some(b)) if a == b => glob(&p[1..], &s[1..]),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worked_example_of_the_contract() {
        let body = br#"{"id":"evt_1","event_type":"webhook.test"}"#;
        assert_eq!(
            header_value("whsec_test", 1_700_000_000, body),
            "t=1700000000,v1=890797583de4452b0b2411b0be0a1dd51250edfed3ad44813c4651a029ba9a76"
        );
    }

    #[test]
    fn globs() {
        let p = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(matches(&p(&["*"]), "vm.terminated"));
        assert!(matches(&p(&["vm.*"]), "vm.terminated"));
        assert!(!matches(&p(&["vm.*"]), "snapshot.ready"));
        assert!(matches(&p(&["snapshot.*", "vm.active"]), "vm.active"));
        assert!(matches(&p(&["vm.?ctive"]), "vm.active"));
        assert!(!matches(&p(&[]), "vm.active"));
        assert!(!matches(&p(&["vm"]), "vm.active"));
    }
}
