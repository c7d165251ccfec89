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
