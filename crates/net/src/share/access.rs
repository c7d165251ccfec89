//! What a request carries for the proxy (owner key, access-link token, cookies) and what the
//! proxy takes out and adds before the request goes to the app.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::net::SocketAddr;

/// The header that carries the owner's API key (the one the API uses).
pub const OWNER_KEY_HEADER: &str = "x-api-key";
/// The query parameter of a private share's access link.
pub const LINK_TOKEN_PARAM: &str = "instavm_share_token";
/// Cookies set by access links are `instavm_share_<share_id>`.
const COOKIE_PREFIX: &str = "instavm_share_";

/// Credentials found on a request.
#[derive(Debug, Default)]
pub struct Credentials {
    pub api_key: Option<String>,
    pub link_token: Option<String>,
    pub cookie_tokens: Vec<(String, String)>,
}

impl Credentials {
    /// Nothing at all: a first visit, not a wrong key.
    pub fn is_empty(&self) -> bool {
        self.api_key.is_none() && self.link_token.is_none() && self.cookie_tokens.is_empty()
    }

    pub fn of(headers: &HeaderMap, query: Option<&str>) -> Credentials {
        let api_key = headers
            .get(OWNER_KEY_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let link_token = query.and_then(|q| {
            q.split('&').find_map(|pair| {
                let (name, value) = pair.split_once('=')?;
                (name == LINK_TOKEN_PARAM && !value.is_empty()).then(|| value.to_owned())
            })
        });
        let cookie_tokens = cookie_pairs(headers)
            .filter_map(|(name, value)| {
                let id = name.strip_prefix(COOKIE_PREFIX)?;
                Some((id.to_owned(), value.to_owned()))
            })
            .collect();
        Credentials {
            api_key,
            link_token,
            cookie_tokens,
        }
    }
}

fn cookie_pairs(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            Some((name.trim(), value.trim()))
        })
}

/// The `Set-Cookie` value an access link visit answers with.
pub fn grant_cookie(share_id: &str, token: &str) -> String {
    format!("{COOKIE_PREFIX}{share_id}={token}; Path=/; HttpOnly; SameSite=Lax")
}

/// `path?query` without the link token (where an access link visit is redirected to).
pub fn without_link_token(path: &str, query: Option<&str>) -> String {
    let rest: Vec<&str> = query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty() && p.split('=').next() != Some(LINK_TOKEN_PARAM))
        .collect();
    if rest.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", rest.join("&"))
    }
}

/// Headers that describe one hop, not the message (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Drop hop-by-hop headers (and those `Connection` names). An upgrade keeps its `Connection:
/// upgrade` and `Upgrade`, which the app needs to answer 101.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .filter(|n| !(upgrade && n == header::UPGRADE))
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

/// Whether a request asks to switch protocols (WebSocket and friends).
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Make a request fit to hand to the app: the owner's key and every share cookie stay with
/// the proxy (in ports mode all shares of a host share one cookie jar, so another share's
/// cookie may be on the request too), and the app learns who asked through `X-Forwarded-*`.
pub fn prepare_for_app(headers: &mut HeaderMap, peer: SocketAddr, upgrade: bool) {
    strip_hop_by_hop(headers, upgrade);
    headers.remove(OWNER_KEY_HEADER);
    let kept: Vec<String> = cookie_pairs(headers)
        .filter(|(name, _)| !name.starts_with(COOKIE_PREFIX))
        .map(|(n, v)| format!("{n}={v}"))
        .collect();
    headers.remove(header::COOKIE);
    if !kept.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&kept.join("; ")) {
            headers.insert(header::COOKIE, v);
        }
    }
    let forwarded_for = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(earlier) => format!("{earlier}, {}", peer.ip()),
        None => peer.ip().to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&forwarded_for) {
        headers.insert("x-forwarded-for", v);
    }
    if let Some(host) = headers.get(header::HOST).cloned() {
        headers.insert("x-forwarded-host", host);
    }
    if !headers.contains_key("x-forwarded-proto") {
        headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn credentials_come_from_header_query_and_cookies() {
        let h = headers(&[
            ("x-api-key", "k1"),
            ("cookie", "a=1; instavm_share_shr-1=t1"),
            ("cookie", "instavm_share_shr-2=t2"),
        ]);
        let c = Credentials::of(&h, Some("x=1&instavm_share_token=tok&y=2"));
        assert_eq!(c.api_key.as_deref(), Some("k1"));
        assert_eq!(c.link_token.as_deref(), Some("tok"));
        assert_eq!(
            c.cookie_tokens,
            vec![("shr-1".into(), "t1".into()), ("shr-2".into(), "t2".into())]
        );
        assert!(
            Credentials::of(&HeaderMap::new(), Some("instavm_share_token="))
                .link_token
                .is_none()
        );
    }

    #[test]
    fn the_link_token_is_taken_out_of_the_redirect() {
        assert_eq!(
            without_link_token("/a", Some("instavm_share_token=t")),
            "/a"
        );
        assert_eq!(
            without_link_token("/a", Some("x=1&instavm_share_token=t&y")),
            "/a?x=1&y"
        );
        assert_eq!(without_link_token("/", None), "/");
    }

    #[test]
    fn the_app_never_sees_keys_share_cookies_or_hop_headers() {
        let mut h = headers(&[
            ("host", "127.0.0.1:20001"),
            ("x-api-key", "secret"),
            ("cookie", "session=abc; instavm_share_shr-9=tok"),
            ("connection", "keep-alive, x-private"),
            ("x-private", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("x-forwarded-for", "10.0.0.1"),
        ]);
        prepare_for_app(&mut h, "192.0.2.7:5555".parse().unwrap(), false);
        assert!(h.get("x-api-key").is_none());
        assert_eq!(h.get("cookie").unwrap(), "session=abc");
        for gone in ["connection", "x-private", "keep-alive", "te"] {
            assert!(h.get(gone).is_none(), "{gone}");
        }
        assert_eq!(h.get("x-forwarded-for").unwrap(), "10.0.0.1, 192.0.2.7");
        assert_eq!(h.get("x-forwarded-host").unwrap(), "127.0.0.1:20001");
        assert_eq!(h.get("x-forwarded-proto").unwrap(), "http");

        let mut only_share_cookie = headers(&[("cookie", "instavm_share_x=1")]);
        prepare_for_app(
            &mut only_share_cookie,
            "192.0.2.7:1".parse().unwrap(),
            false,
        );
        assert!(only_share_cookie.get("cookie").is_none());
    }

    #[test]
    fn upgrades_keep_their_headers() {
        let mut h = headers(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert!(is_upgrade(&h));
        prepare_for_app(&mut h, "192.0.2.7:1".parse().unwrap(), true);
        assert_eq!(h.get("connection").unwrap(), "upgrade");
        assert_eq!(h.get("upgrade").unwrap(), "websocket");
        assert!(!is_upgrade(&headers(&[("upgrade", "websocket")])));
    }
}
