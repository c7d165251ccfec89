//! The provider catalog of spec/api.md §4.15: known APIs, their hosts and how they take a key.
//! `services:from_template` binds entries of it; deploy bootstrap matches hosts against it.

use serde::Serialize;
use serde_json::{json, Value};

/// One provider. `host` may hold a `*` wildcard (matched like fnmatch, `*` across dots).
#[derive(Debug, Clone, Serialize)]
pub struct CatalogEntry {
    pub id: &'static str,
    pub name: &'static str,
    pub host: &'static str,
    /// `bearer`, `api-key`, `basic`, `url-path`.
    pub auth_type: &'static str,
    pub credential_key: &'static str,
    /// The header the key goes in (`Authorization` for bearer and basic).
    pub header: Option<&'static str>,
    pub prefix: Option<&'static str>,
    pub path_placeholder: Option<&'static str>,
    pub description: &'static str,
}

#[allow(clippy::too_many_arguments)] // one row of the table, positional on purpose
const fn e(
    id: &'static str,
    name: &'static str,
    host: &'static str,
    auth_type: &'static str,
    credential_key: &'static str,
    header: Option<&'static str>,
    prefix: Option<&'static str>,
    description: &'static str,
) -> CatalogEntry {
    CatalogEntry {
        id,
        name,
        host,
        auth_type,
        credential_key,
        header,
        prefix,
        path_placeholder: None,
        description,
    }
}

const AUTH: Option<&str> = Some("Authorization");
const BEARER: Option<&str> = Some("Bearer ");

/// The 25 providers, in the README's order.
pub const CATALOG: &[CatalogEntry] = &[
    e(
        "openai",
        "OpenAI",
        "api.openai.com",
        "bearer",
        "OPENAI_API_KEY",
        AUTH,
        BEARER,
        "OpenAI API",
    ),
    e(
        "anthropic",
        "Anthropic",
        "api.anthropic.com",
        "api-key",
        "ANTHROPIC_API_KEY",
        Some("x-api-key"),
        None,
        "Anthropic Claude API",
    ),
    e(
        "openrouter",
        "OpenRouter",
        "openrouter.ai",
        "bearer",
        "OPENROUTER_API_KEY",
        AUTH,
        BEARER,
        "OpenRouter API",
    ),
    e(
        "gemini",
        "Google Gemini",
        "generativelanguage.googleapis.com",
        "api-key",
        "GOOGLE_API_KEY",
        Some("x-goog-api-key"),
        None,
        "Google Generative Language API",
    ),
    e(
        "stripe",
        "Stripe",
        "api.stripe.com",
        "bearer",
        "STRIPE_SECRET_KEY",
        AUTH,
        BEARER,
        "Stripe API",
    ),
    e(
        "github",
        "GitHub",
        "api.github.com",
        "bearer",
        "GITHUB_TOKEN",
        AUTH,
        BEARER,
        "GitHub REST and GraphQL API",
    ),
    e(
        "linear",
        "Linear",
        "api.linear.app",
        "api-key",
        "LINEAR_API_KEY",
        AUTH,
        None,
        "Linear GraphQL API",
    ),
    e(
        "notion",
        "Notion",
        "api.notion.com",
        "bearer",
        "NOTION_API_KEY",
        AUTH,
        BEARER,
        "Notion API",
    ),
    e(
        "groq",
        "Groq",
        "api.groq.com",
        "bearer",
        "GROQ_API_KEY",
        AUTH,
        BEARER,
        "Groq API",
    ),
    e(
        "perplexity",
        "Perplexity",
        "api.perplexity.ai",
        "bearer",
        "PERPLEXITY_API_KEY",
        AUTH,
        BEARER,
        "Perplexity API",
    ),
    e(
        "elevenlabs",
        "ElevenLabs",
        "api.elevenlabs.io",
        "api-key",
        "ELEVENLABS_API_KEY",
        Some("xi-api-key"),
        None,
        "ElevenLabs API",
    ),
    e(
        "cloudflare",
        "Cloudflare",
        "api.cloudflare.com",
        "bearer",
        "CLOUDFLARE_API_TOKEN",
        AUTH,
        BEARER,
        "Cloudflare API",
    ),
    e(
        "datadog",
        "Datadog",
        "*.datadoghq.com",
        "api-key",
        "DD_API_KEY",
        Some("DD-API-KEY"),
        None,
        "Datadog API (every site)",
    ),
    e(
        "sentry",
        "Sentry",
        "sentry.io",
        "bearer",
        "SENTRY_AUTH_TOKEN",
        AUTH,
        BEARER,
        "Sentry API",
    ),
    e(
        "slack",
        "Slack",
        "slack.com",
        "bearer",
        "SLACK_BOT_TOKEN",
        AUTH,
        BEARER,
        "Slack Web API",
    ),
    e(
        "vercel",
        "Vercel",
        "api.vercel.com",
        "bearer",
        "VERCEL_TOKEN",
        AUTH,
        BEARER,
        "Vercel API",
    ),
    e(
        "supabase",
        "Supabase",
        "*.supabase.co",
        "api-key",
        "SUPABASE_SERVICE_ROLE_KEY",
        Some("apikey"),
        None,
        "Supabase project APIs",
    ),
    e(
        "jira",
        "Jira",
        "*.atlassian.net",
        "basic",
        "JIRA_API_TOKEN",
        AUTH,
        None,
        "Jira Cloud API (username credential JIRA_API_TOKEN_USER)",
    ),
    e(
        "hubspot",
        "HubSpot",
        "api.hubapi.com",
        "bearer",
        "HUBSPOT_ACCESS_TOKEN",
        AUTH,
        BEARER,
        "HubSpot API",
    ),
    e(
        "twilio",
        "Twilio",
        "api.twilio.com",
        "basic",
        "TWILIO_AUTH_TOKEN",
        AUTH,
        None,
        "Twilio API (username credential TWILIO_AUTH_TOKEN_USER: the account SID)",
    ),
    e(
        "pagerduty",
        "PagerDuty",
        "api.pagerduty.com",
        "api-key",
        "PAGERDUTY_API_KEY",
        AUTH,
        Some("Token token="),
        "PagerDuty REST API",
    ),
    e(
        "postmark",
        "Postmark",
        "api.postmarkapp.com",
        "api-key",
        "POSTMARK_SERVER_TOKEN",
        Some("X-Postmark-Server-Token"),
        None,
        "Postmark API",
    ),
    e(
        "resend",
        "Resend",
        "api.resend.com",
        "bearer",
        "RESEND_API_KEY",
        AUTH,
        BEARER,
        "Resend API",
    ),
    e(
        "sendgrid",
        "SendGrid",
        "api.sendgrid.com",
        "bearer",
        "SENDGRID_API_KEY",
        AUTH,
        BEARER,
        "SendGrid API",
    ),
    CatalogEntry {
        id: "telegram",
        name: "Telegram Bot API",
        host: "api.telegram.org",
        auth_type: "url-path",
        credential_key: "TELEGRAM_BOT_TOKEN",
        header: None,
        prefix: None,
        path_placeholder: Some("TELEGRAM_BOT_TOKEN"),
        description: "Telegram Bot API (the token is part of the URL path)",
    },
];

pub fn find(id: &str) -> Option<&'static CatalogEntry> {
    CATALOG.iter().find(|e| e.id == id)
}

impl CatalogEntry {
    /// The `auth_config` a service bound from this entry gets (the shapes bootstrap builds).
    pub fn auth_config(&self) -> Value {
        match self.auth_type {
            "bearer" => json!({"type": "bearer", "token": self.credential_key}),
            "api-key" => {
                let mut v = json!({
                    "type": "api-key",
                    "header": self.header.unwrap_or("Authorization"),
                    "key": self.credential_key,
                });
                if let Some(p) = self.prefix {
                    v["prefix"] = json!(p);
                }
                v
            }
            "basic" => json!({
                "type": "basic",
                "username": format!("{}_USER", self.credential_key),
                "password": self.credential_key,
            }),
            "url-path" => json!({
                "type": "url-path",
                "token": self.credential_key,
                "placeholder": self.path_placeholder.unwrap_or(self.credential_key),
            }),
            _ => json!({"type": "passthrough"}),
        }
    }
}

/// fnmatch-style host match: `*` matches any run (dots included), case-insensitive.
pub fn host_matches(pattern: &str, host: &str) -> bool {
    fn go(p: &[u8], h: &[u8]) -> bool {
        match p.split_first() {
            None => h.is_empty(),
            Some((b'*', rest)) => (0..=h.len()).any(|i| go(rest, &h[i..])),
            Some((c, rest)) => h
                .split_first()
                .is_some_and(|(d, hr)| c.eq_ignore_ascii_case(d) && go(rest, hr)),
        }
    }
    go(pattern.as_bytes(), host.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_has_the_25_readme_ids() {
        let ids: Vec<_> = CATALOG.iter().map(|e| e.id).collect();
        for id in [
            "openai",
            "anthropic",
            "openrouter",
            "gemini",
            "stripe",
            "github",
            "linear",
            "notion",
            "groq",
            "perplexity",
            "elevenlabs",
            "cloudflare",
            "datadog",
            "sentry",
            "slack",
            "vercel",
            "supabase",
            "jira",
            "hubspot",
            "twilio",
            "pagerduty",
            "postmark",
            "resend",
            "sendgrid",
            "telegram",
        ] {
            assert!(ids.contains(&id), "{id}");
        }
        assert_eq!(ids.len(), 25);
        for e in CATALOG {
            crate::AuthConfig::parse(&e.auth_config()).unwrap();
        }
    }

    #[test]
    fn wildcards() {
        assert!(host_matches("*.supabase.co", "abc.supabase.co"));
        assert!(host_matches("API.openai.com", "api.openai.com"));
        assert!(!host_matches("*.supabase.co", "supabase.co"));
        assert!(!host_matches("api.openai.com", "api.openai.com.evil"));
    }
}
