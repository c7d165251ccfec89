//! The proxy's own answers: a short HTML page for browsers, `{"detail": ...}` for API clients.

use super::forward::{full, Body};
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};

pub fn error(status: u16, message: &str, request: &HeaderMap) -> Response<Body> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    let wants_json = request
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json") && !a.contains("text/html"));
    let (body, kind) = if wants_json {
        (json_detail(message), "application/json")
    } else {
        (html(status, message), "text/html; charset=utf-8")
    };
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if status == StatusCode::UNAUTHORIZED {
        h.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("X-API-Key realm=\"instavm share\""),
        );
    }
    resp
}

/// The proxy's own page on every share's origin (a path no app uses): where browsers without
/// access to a private share are sent. The form hands the access token to the share's access
/// link, which sets the cookie and goes on to the page asked for.
pub const SIGN_IN_PATH: &str = "/.well-known/instavm-share/sign-in";

/// A plain navigation: GET or HEAD without asking for JSON.
pub fn is_browser_navigation(method: &http::Method, request: &HeaderMap) -> bool {
    let wants_json = request
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json") && !a.contains("text/html"));
    (method == http::Method::GET || method == http::Method::HEAD) && !wants_json
}

/// 303 to the sign-in page, remembering where the visitor was going.
pub fn to_sign_in(next: &str) -> Response<Body> {
    let location = format!(
        "{SIGN_IN_PATH}?next={}",
        url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
    );
    let mut resp = Response::new(full(String::new()));
    *resp.status_mut() = StatusCode::SEE_OTHER;
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&location) {
        h.insert(header::LOCATION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The sign-in page: a form asking for the share's access token (the `instavm_share_token` of
/// its access link). It shows nothing about the share, so it is the same for every visitor.
pub fn sign_in(query: Option<&str>) -> Response<Body> {
    let next = query
        .into_iter()
        .flat_map(|q| url::form_urlencoded::parse(q.as_bytes()))
        .find(|(k, _)| k == "next")
        .map(|(_, v)| v.into_owned())
        // Only a path on this origin: never an open redirect.
        .filter(|n| n.starts_with('/') && !n.starts_with("//") && !n.starts_with("/\\"))
        .unwrap_or_else(|| "/".into());
    let (path, _) = next.split_once('?').unwrap_or((&next, ""));
    let body = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Private share</title></head>\n\
         <body><h1>This share is private</h1>\n\
         <p>Open its access link, or paste the access token (the <code>instavm_share_token</code> \
         of the link) below. API clients send the owner's <code>X-API-Key</code> header instead.</p>\n\
         <form method=\"get\" action=\"{}\"><input name=\"instavm_share_token\" \
         autocomplete=\"off\" size=\"48\"> <button>Open</button></form>\n\
         <p><small>instavm share proxy</small></p></body></html>\n",
        escape(path)
    );
    let mut resp = Response::new(full(body));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// 303 to `location`, setting `cookie`.
pub fn redirect(location: &str, cookie: &str) -> Response<Body> {
    let mut resp = Response::new(full(String::new()));
    *resp.status_mut() = StatusCode::SEE_OTHER;
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(location) {
        h.insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(cookie) {
        h.insert(header::SET_COOKIE, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn html(status: StatusCode, message: &str) -> String {
    let title = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title></head>\n\
         <body><h1>{title}</h1>\n<p>{}</p>\n<p><small>instavm share proxy</small></p></body></html>\n",
        escape(message)
    )
}

fn json_detail(message: &str) -> String {
    let mut out = String::from("{\"detail\":\"");
    for c in message.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push_str("\"}");
    out
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_escape_and_json_is_valid() {
        assert!(html(StatusCode::BAD_GATEWAY, "<b>").contains("&lt;b&gt;"));
        assert_eq!(json_detail("a \"b\"\n"), r#"{"detail":"a \"b\"\u000a"}"#);
    }
}
