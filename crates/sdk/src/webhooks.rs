//! Webhooks (spec §15) and the receiver's side of the signature contract (spec/webhooks.md §1).

use crate::*;

impl Client {
    pub async fn create_webhook(&self, req: &CreateWebhookRequest) -> Result<WebhookEndpoint> {
        self.post(&["v1", "webhooks", "endpoints"], req).await
    }

    pub async fn list_webhooks(&self) -> Result<Vec<WebhookEndpoint>> {
        self.get(&["v1", "webhooks", "endpoints"]).await
    }

    pub async fn get_webhook(&self, id: &str) -> Result<WebhookEndpoint> {
        self.get(&["v1", "webhooks", "endpoints", id]).await
    }

    pub async fn update_webhook(
        &self,
        id: &str,
        req: &UpdateWebhookRequest,
    ) -> Result<WebhookEndpoint> {
        self.send(
            self.request(Method::PATCH, &["v1", "webhooks", "endpoints", id])?
                .json(req),
        )
        .await
    }

    /// A soft-disable (the endpoint stays listable).
    pub async fn delete_webhook(&self, id: &str) -> Result<serde_json::Value> {
        self.send(self.request(Method::DELETE, &["v1", "webhooks", "endpoints", id])?)
            .await
    }

    pub async fn rotate_webhook_secret(&self, id: &str) -> Result<WebhookEndpoint> {
        self.send(self.request(
            Method::POST,
            &["v1", "webhooks", "endpoints", id, "rotate-secret"],
        )?)
        .await
    }

    pub async fn test_webhook(&self, id: &str) -> Result<serde_json::Value> {
        self.send(self.request(Method::POST, &["v1", "webhooks", "endpoints", id, "test"])?)
            .await
    }

    pub async fn verify_webhook(&self, id: &str) -> Result<WebhookVerifyResult> {
        self.send(self.request(Method::POST, &["v1", "webhooks", "endpoints", id, "verify"])?)
            .await
    }

    pub async fn webhook_deliveries(&self, query: &DeliveryQuery) -> Result<WebhookDeliveryPage> {
        let http = self.request(Method::GET, &["v1", "webhooks", "deliveries"])?;
        self.send(http.query(query)).await
    }

    pub async fn webhook_delivery(&self, id: &str) -> Result<WebhookDelivery> {
        self.get(&["v1", "webhooks", "deliveries", id]).await
    }

    pub async fn replay_webhook_delivery(&self, id: &str) -> Result<serde_json::Value> {
        self.send(self.request(
            Method::POST,
            &["v1", "webhooks", "deliveries", id, "replay"],
        )?)
        .await
    }
}

/// Verifying a delivery as a receiver, with the official SDK's order of checks and reasons.
pub mod signature {
    use hmac::{Hmac, Mac};
    use sha2::Sha256;
    use std::collections::HashMap;

    pub const HEADER: &str = "InstaVM-Signature";
    pub const DEFAULT_TOLERANCE_SECONDS: i64 = 300;

    /// Why a delivery did not verify (`reason` as the official SDK names it).
    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    #[error("{message}")]
    pub struct VerificationError {
        pub reason: &'static str,
        pub message: String,
    }

    fn fail(reason: &'static str, message: impl Into<String>) -> VerificationError {
        VerificationError {
            reason,
            message: message.into(),
        }
    }

    /// The lowercase hex HMAC-SHA256 of `<timestamp>.<body>` keyed by the secret's bytes.
    pub fn compute(secret: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
            .expect("HMAC takes keys of any length");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// `t=..,v1=..` as a map; the last of a repeated key wins.
    pub fn parse_header(value: &str) -> HashMap<String, String> {
        value
            .split(',')
            .filter_map(|item| item.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect()
    }

    /// Check a delivery; returns the event. `tolerance` below zero skips the time check.
    pub fn verify(
        headers: &[(String, String)],
        body: &[u8],
        secret: &str,
        tolerance: i64,
        now: i64,
    ) -> Result<serde_json::Value, VerificationError> {
        let value = headers
            .iter()
            .find(|(k, _)| k == HEADER)
            .or_else(|| headers.iter().find(|(k, _)| k == &HEADER.to_lowercase()))
            .or_else(|| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(HEADER)))
            .map(|(_, v)| v.as_str())
            .unwrap_or("");
        if value.is_empty() {
            return Err(fail("missing_header", format!("missing {HEADER} header")));
        }
        let parts = parse_header(value);
        let Some(t) = parts.get("t") else {
            return Err(fail(
                "malformed_header",
                "signature header has no t= component",
            ));
        };
        let Some(v1) = parts.get("v1") else {
            return Err(fail(
                "missing_signature",
                "signature header has no v1= component",
            ));
        };
        let Ok(t) = t.parse::<i64>() else {
            return Err(fail("malformed_header", "t= is not an integer"));
        };
        if tolerance >= 0 && (now - t).abs() > tolerance {
            return Err(fail(
                "stale_timestamp",
                format!("timestamp {t} is more than {tolerance} s from now"),
            ));
        }
        let expected = compute(secret, t, body);
        let given = v1.to_lowercase();
        // Constant time over the whole length.
        let same = expected.len() == given.len()
            && expected
                .bytes()
                .zip(given.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if !same {
            return Err(fail("invalid_signature", "signature does not match"));
        }
        serde_json::from_slice(body)
            .map_err(|e| fail("invalid_payload", format!("body is not JSON: {e}")))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn worked_example_and_reasons() {
            let body = br#"{"id":"evt_1","event_type":"webhook.test"}"#;
            let h = |v: &str| vec![("InstaVM-Signature".to_owned(), v.to_owned())];
            let good =
                "t=1700000000,v1=890797583de4452b0b2411b0be0a1dd51250edfed3ad44813c4651a029ba9a76";
            assert!(verify(&h(good), body, "whsec_test", -1, 0).is_ok());
            let lower = vec![(
                "instavm-signature".to_owned(),
                good.to_uppercase()
                    .replace("T=", "t=")
                    .replace("V1=", "v1="),
            )];
            assert!(verify(&lower, body, "whsec_test", -1, 0).is_ok());
            let reason = |hs: Vec<(String, String)>, tol: i64| {
                verify(&hs, body, "whsec_test", tol, 1_700_001_000)
                    .unwrap_err()
                    .reason
            };
            assert_eq!(reason(vec![], 300), "missing_header");
            assert_eq!(reason(h("v1=ab"), 300), "malformed_header");
            assert_eq!(reason(h("t=1"), 300), "missing_signature");
            assert_eq!(reason(h("t=x,v1=ab"), 300), "malformed_header");
            assert_eq!(reason(h(good), 300), "stale_timestamp");
            assert_eq!(reason(h("t=1700000000,v1=00"), -1), "invalid_signature");
        }
    }
}
