//! A service's `auth_config` (spec/api.md §4): how a credential goes into requests to its host,
//! and the injection itself.
//!
//! Injection never puts a value where the VM did not ask for one by placeholder, except to add
//! the configured header when the request has none. A header the VM set to something that is
//! not its placeholder is left alone (it is the VM's own key).

use crate::crypto::Secret;
use base64::Engine;
use http::header::{HeaderName, HeaderValue, AUTHORIZATION};
use http::HeaderMap;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthConfig {
    /// `Authorization: Bearer <token>`.
    Bearer { token: String },
    /// `<header>: <prefix><key>`; also the 0.22 type name `header`.
    ApiKey {
        header: String,
        key: String,
        prefix: Option<String>,
    },
    /// The credential is part of the URL path, where `placeholder` (or the VM's placeholder
    /// token) stands.
    UrlPath { token: String, placeholder: String },
    /// `Authorization: Basic base64(username:password)`, both credential names.
    Basic { username: String, password: String },
    /// Proxied, nothing injected.
    Passthrough,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("auth_config must be an object with a string \"type\"")]
    NotAnObject,
    #[error("auth_config type {0:?} is not one of bearer, api-key, header, url-path, basic, passthrough")]
    UnknownType(String),
    #[error("auth_config of type {kind} needs a non-empty string {field:?}")]
    Missing {
        kind: &'static str,
        field: &'static str,
    },
    #[error("auth_config header {0:?} is not a valid HTTP header name")]
    BadHeader(String),
}

fn field(v: &Value, kind: &'static str, name: &'static str) -> Result<String, AuthError> {
    match v.get(name) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
        _ => Err(AuthError::Missing { kind, field: name }),
    }
}

fn opt(v: &Value, name: &str) -> Option<String> {
    v.get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

impl AuthConfig {
    pub fn parse(v: &Value) -> Result<AuthConfig, AuthError> {
        let kind = v
            .as_object()
            .and_then(|o| o.get("type"))
            .and_then(Value::as_str)
            .ok_or(AuthError::NotAnObject)?;
        Ok(match kind.to_ascii_lowercase().as_str() {
            "bearer" => AuthConfig::Bearer {
                token: field(v, "bearer", "token")?,
            },
            "api-key" | "api_key" | "apikey" | "header" => {
                let header = field(v, "api-key", "header")?;
                HeaderName::from_bytes(header.as_bytes())
                    .map_err(|_| AuthError::BadHeader(header.clone()))?;
                AuthConfig::ApiKey {
                    header,
                    key: field(v, "api-key", "key")?,
                    prefix: opt(v, "prefix"),
                }
            }
            "url-path" | "url_path" => {
                let token = field(v, "url-path", "token")?;
                let placeholder = opt(v, "placeholder").unwrap_or_else(|| token.clone());
                AuthConfig::UrlPath { token, placeholder }
            }
            "basic" => AuthConfig::Basic {
                username: field(v, "basic", "username")?,
                password: field(v, "basic", "password")?,
            },
            "passthrough" | "none" => AuthConfig::Passthrough,
            other => return Err(AuthError::UnknownType(other.to_owned())),
        })
    }

    /// The credential names it refers to.
    pub fn credential_names(&self) -> Vec<&str> {
        match self {
            AuthConfig::Bearer { token } => vec![token],
            AuthConfig::ApiKey { key, .. } => vec![key],
            AuthConfig::UrlPath { token, .. } => vec![token],
            AuthConfig::Basic { username, password } => vec![username, password],
            AuthConfig::Passthrough => vec![],
        }
    }
}

/// What injection knows of one credential: its value and the VM's placeholder for it.
pub struct Cred<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub value: &'a Secret,
    pub placeholder: &'a str,
}

/// What was injected (for the request log): the credential's name and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injected {
    pub credential_name: String,
    pub credential_id: String,
}

fn replace_in_header(
    headers: &mut HeaderMap,
    name: &HeaderName,
    cred: &Cred<'_>,
    prefix: &str,
) -> Option<Injected> {
    let injected = Injected {
        credential_name: cred.name.to_owned(),
        credential_id: cred.id.to_owned(),
    };
    match headers.get(name) {
        Some(v) => {
            let text = v.to_str().ok()?;
            if !text.contains(cred.placeholder) {
                return None;
            }
            let new = text.replace(cred.placeholder, cred.value.expose());
            let hv = HeaderValue::from_str(&new).ok()?;
            headers.insert(name.clone(), mark_sensitive(hv));
            Some(injected)
        }
        None => {
            let hv = HeaderValue::from_str(&format!("{prefix}{}", cred.value.expose())).ok()?;
            headers.insert(name.clone(), mark_sensitive(hv));
            Some(injected)
        }
    }
}

fn mark_sensitive(mut v: HeaderValue) -> HeaderValue {
    v.set_sensitive(true);
    v
}

/// Inject into one request. `path` is the path part of the URI (no query); it is rewritten in
/// place for `url-path`. Returns what was injected, `None` when nothing was.
pub fn inject<'a>(
    auth: &AuthConfig,
    headers: &mut HeaderMap,
    path: &mut String,
    lookup: impl Fn(&str) -> Option<Cred<'a>>,
) -> Option<Injected> {
    match auth {
        AuthConfig::Bearer { token } => {
            let cred = lookup(token)?;
            replace_in_header(headers, &AUTHORIZATION, &cred, "Bearer ")
        }
        AuthConfig::ApiKey {
            header,
            key,
            prefix,
        } => {
            let cred = lookup(key)?;
            let name = HeaderName::from_bytes(header.as_bytes()).ok()?;
            replace_in_header(headers, &name, &cred, prefix.as_deref().unwrap_or(""))
        }
        AuthConfig::UrlPath { token, placeholder } => {
            let cred = lookup(token)?;
            let mut hit = false;
            for p in [cred.placeholder, placeholder.as_str()] {
                if !p.is_empty() && path.contains(p) {
                    *path = path.replace(p, cred.value.expose());
                    hit = true;
                }
            }
            hit.then(|| Injected {
                credential_name: cred.name.to_owned(),
                credential_id: cred.id.to_owned(),
            })
        }
        AuthConfig::Basic { username, password } => {
            let user = lookup(username)?;
            let pass = lookup(password)?;
            let engine = base64::engine::general_purpose::STANDARD;
            let pair = match headers.get(AUTHORIZATION) {
                Some(v) => {
                    let text = v.to_str().ok()?;
                    let b64 = text
                        .strip_prefix("Basic ")
                        .or_else(|| text.strip_prefix("basic "))?;
                    let decoded = String::from_utf8(engine.decode(b64.trim()).ok()?).ok()?;
                    if !decoded.contains(user.placeholder) && !decoded.contains(pass.placeholder) {
                        return None;
                    }
                    decoded
                        .replace(user.placeholder, user.value.expose())
                        .replace(pass.placeholder, pass.value.expose())
                }
                None => format!("{}:{}", user.value.expose(), pass.value.expose()),
            };
            let hv = HeaderValue::from_str(&format!("Basic {}", engine.encode(pair))).ok()?;
            headers.insert(AUTHORIZATION, mark_sensitive(hv));
            Some(Injected {
                credential_name: pass.name.to_owned(),
                credential_id: pass.id.to_owned(),
            })
        }
        AuthConfig::Passthrough => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn with<'a>(s: &'a Secret, ph: &'a str) -> impl Fn(&str) -> Option<Cred<'a>> {
        move |name: &str| {
            (name == "K").then_some(Cred {
                id: "c1",
                name: "K",
                value: s,
                placeholder: ph,
            })
        }
    }

    #[test]
    fn parse_shapes() {
        assert_eq!(
            AuthConfig::parse(&json!({"type": "header", "header": "X-Key", "key": "K"})).unwrap(),
            AuthConfig::ApiKey {
                header: "X-Key".into(),
                key: "K".into(),
                prefix: None
            }
        );
        assert_eq!(
            AuthConfig::parse(&json!({"type": "url-path", "token": "T"})).unwrap(),
            AuthConfig::UrlPath {
                token: "T".into(),
                placeholder: "T".into()
            }
        );
        assert!(AuthConfig::parse(&json!({"type": "bearer"})).is_err());
        assert!(AuthConfig::parse(&json!({"type": "magic"})).is_err());
        assert!(AuthConfig::parse(&json!("bearer")).is_err());
        assert!(
            AuthConfig::parse(&json!({"type": "api-key", "header": "a b", "key": "K"})).is_err()
        );
        assert_eq!(
            AuthConfig::parse(&json!({"type": "passthrough"})).unwrap(),
            AuthConfig::Passthrough
        );
    }

    #[test]
    fn bearer_replaces_placeholder_or_adds() {
        let s = Secret::new("sk-real".into());
        let auth = AuthConfig::Bearer { token: "K".into() };
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, "Bearer ivp_x".parse().unwrap());
        let mut p = "/v1".to_owned();
        assert!(inject(&auth, &mut h, &mut p, with(&s, "ivp_x")).is_some());
        assert_eq!(h[AUTHORIZATION], "Bearer sk-real");
        let mut h = HeaderMap::new();
        inject(&auth, &mut h, &mut p, with(&s, "ivp_x")).unwrap();
        assert_eq!(h[AUTHORIZATION], "Bearer sk-real");
        // The VM's own key stays.
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, "Bearer mine".parse().unwrap());
        assert!(inject(&auth, &mut h, &mut p, with(&s, "ivp_x")).is_none());
        assert_eq!(h[AUTHORIZATION], "Bearer mine");
    }

    #[test]
    fn api_key_url_path_basic() {
        let s = Secret::new("v".into());
        let mut p = "/bot/x".to_owned();
        let mut h = HeaderMap::new();
        let auth = AuthConfig::ApiKey {
            header: "x-api-key".into(),
            key: "K".into(),
            prefix: Some("Token ".into()),
        };
        inject(&auth, &mut h, &mut p, with(&s, "ph")).unwrap();
        assert_eq!(h["x-api-key"], "Token v");
        let auth = AuthConfig::UrlPath {
            token: "K".into(),
            placeholder: "K".into(),
        };
        let mut p = "/botph/getMe".to_owned();
        inject(&auth, &mut h, &mut p, with(&s, "ph")).unwrap();
        assert_eq!(p, "/botv/getMe");
        let mut p = "/botK/getMe".to_owned();
        inject(&auth, &mut h, &mut p, with(&s, "ph")).unwrap();
        assert_eq!(p, "/botv/getMe");
        let mut p = "/bot/getMe".to_owned();
        assert!(inject(&auth, &mut h, &mut p, with(&s, "ph")).is_none());
        let auth = AuthConfig::Basic {
            username: "K".into(),
            password: "K".into(),
        };
        let mut h = HeaderMap::new();
        inject(&auth, &mut h, &mut p, with(&s, "ph")).unwrap();
        assert_eq!(h[AUTHORIZATION], "Basic djp2");
    }

    #[test]
    fn a_value_with_newlines_is_not_injected() {
        let s = Secret::new("a\r\nX-Evil: 1".into());
        let auth = AuthConfig::Bearer { token: "K".into() };
        let mut h = HeaderMap::new();
        let mut p = String::new();
        assert!(inject(&auth, &mut h, &mut p, with(&s, "ph")).is_none());
        assert!(h.is_empty());
    }
}
