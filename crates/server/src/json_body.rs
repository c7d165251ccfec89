//! JSON response bodies whose big string fields are escaped as they are sent.
//!
//! Escaping output for JSON can multiply it by six (`\x01` becomes `\u0001`), so building the
//! whole document first costs several copies of an execution's output per request. Here the
//! small fields are serialized as usual and each big one is escaped one slice at a time while
//! the body streams out: the server holds the raw text plus one escaped slice.

use axum::body::Body;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;
use std::convert::Infallible;
use std::sync::Arc;

/// Raw bytes escaped per body chunk (at most 6x that once escaped).
const SLICE: usize = 64 << 10;

/// `value` as a JSON object whose fields named in `texts` carry the given strings instead (the
/// struct's own values of those fields are ignored; pass them empty). Two fields may share one
/// string (`stdout` and `output`) without a copy. `held` is dropped when the body is done (sent
/// or abandoned): a limit's pass stays taken while the text is still in memory.
pub fn object_with_texts<T: Serialize>(
    value: &T,
    texts: Vec<(&'static str, Arc<String>)>,
    held: impl Send + 'static,
) -> Result<Response, serde_json::Error> {
    let serde_json::Value::Object(map) = serde_json::to_value(value)? else {
        return Err(serde::ser::Error::custom("not a JSON object"));
    };
    let mut pieces: Vec<Box<dyn Iterator<Item = Bytes> + Send>> = Vec::new();
    for (i, (name, field)) in map.into_iter().enumerate() {
        let key = format!(
            "{}{}:",
            if i == 0 { "{" } else { "," },
            serde_json::to_string(&name)?
        );
        pieces.push(Box::new(std::iter::once(Bytes::from(key))));
        match texts.iter().find(|(n, _)| *n == name) {
            Some((_, text)) => pieces.push(Box::new(escaped_string(text.clone()))),
            None => pieces.push(Box::new(std::iter::once(Bytes::from(serde_json::to_vec(
                &field,
            )?)))),
        }
    }
    let close = if pieces.is_empty() { "{}" } else { "}" };
    pieces.push(Box::new(std::iter::once(Bytes::from_static(
        close.as_bytes(),
    ))));
    let chunks = pieces.into_iter().flatten().map(move |chunk| {
        let _held = &held;
        Ok::<Bytes, Infallible>(chunk)
    });
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(futures::stream::iter(chunks)),
    )
        .into_response())
}

/// `text` as a JSON string literal (quotes included), escaped slice by slice.
fn escaped_string(text: Arc<String>) -> impl Iterator<Item = Bytes> + Send {
    let quote = || std::iter::once(Bytes::from_static(b"\""));
    let mut pos = 0;
    let body = std::iter::from_fn(move || {
        if pos >= text.len() {
            return None;
        }
        let mut end = (pos + SLICE).min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        let slice = &text[pos..end];
        pos = end;
        // A `str` always serializes; the quotes around each slice are dropped.
        let quoted = Bytes::from(serde_json::to_vec(slice).unwrap_or_default());
        Some(match quoted.len() {
            n if n >= 2 => quoted.slice(1..n - 1),
            _ => Bytes::new(),
        })
    });
    quote().chain(body).chain(quote())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn streamed_document_is_the_serialized_one() {
        #[derive(Serialize)]
        struct Doc {
            stdout: String,
            code: i32,
            output: String,
            note: Option<String>,
        }
        let big: String = (0..200_000u32)
            .map(|i| ['\u{1}', '"', '\\', 'é', '\n', 'x', '😀'][i as usize % 7])
            .collect();
        let text = Arc::new(big.clone());
        let doc = Doc {
            stdout: String::new(),
            code: 3,
            output: String::new(),
            note: None,
        };
        let response =
            object_with_texts(&doc, vec![("stdout", text.clone()), ("output", text)], ()).unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let got: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let want = serde_json::json!({"stdout": big, "code": 3, "output": big, "note": null});
        assert_eq!(got, want);
    }
}
