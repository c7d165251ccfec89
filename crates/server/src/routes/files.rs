//! `/upload` (multipart, streamed into the sandbox) and `/download` (base64 in JSON, streamed
//! out of the sandbox) (spec §1.5, §1.6).

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiForm, ApiMultipart};
use crate::gate::Pass;
use crate::sessions;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::multipart::Field;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use instavm_api::{upload_fields, DownloadRequest, UploadResponse};
use instavm_runtime::{normalize_sandbox_path, ByteReader, FileKind, RuntimeError, WriteOptions};
use std::io;
use tokio::io::AsyncWriteExt;
use tokio_util::io::{ReaderStream, StreamReader};

/// Relative paths are taken from the sandbox's working directory.
const WORKDIR: &str = "/app";
/// Longest text field accepted in the upload form.
const MAX_FIELD_BYTES: usize = 8 * 1024;

/// Check a path from a request and make it absolute. `..` segments are refused outright: no
/// legitimate caller needs them, and refusing is clearer than resolving them.
pub fn sandbox_path(raw: &str) -> ApiResult<String> {
    if raw.contains('\0') {
        return Err(ApiError::BadRequest("path contains a NUL byte".into()));
    }
    if raw.split('/').any(|seg| seg == "..") {
        return Err(ApiError::BadRequest(format!(
            "path {raw:?} contains a '..' segment; use an absolute path inside the sandbox"
        )));
    }
    normalize_sandbox_path(raw, WORKDIR)
        .map_err(|e| ApiError::BadRequest(format!("invalid path: {e}")))
}

/// A place among the user's file transfers in flight, or 429.
pub(crate) fn transfer_pass(state: &AppState, user_id: i64) -> ApiResult<Pass> {
    let limit = state.limits().max_concurrent_transfers_per_user;
    state
        .gate()
        .try_enter(&[(format!("transfer-user:{user_id}"), limit)])
        .map_err(|_| {
            ApiError::TooManyRequests(format!(
                "too many file transfers at once: at most {limit} uploads and downloads at a time per user; wait for one to finish"
            ))
        })
}

/// `POST /upload`: fields `file`, `remote_path`, `session_id`, `recursive`.
///
/// `session_id` must come before the file part (the official SDK sends the text fields
/// first): the session is checked before any file byte is accepted. The file part is streamed
/// straight into the sandbox when `remote_path` came first too; otherwise it is spooled to disk
/// (never held in memory) until `remote_path` arrives, within the user's spool allowance.
pub async fn upload(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiMultipart(mut form): ApiMultipart,
) -> ApiResult<Json<UploadResponse>> {
    let answer = receive(&state, user.id, &mut form).await;
    if answer.is_err() {
        // Read (and drop) what the client is still sending, so it gets to read the error
        // instead of a reset connection half-way through its body.
        drain_rest(&mut form, DRAIN_AFTER_ERROR).await;
    }
    answer.map(Json)
}

/// Most body bytes read and dropped after a refused upload before the connection is closed.
pub(crate) const DRAIN_AFTER_ERROR: u64 = 64 << 20;

pub(crate) async fn drain_rest(form: &mut axum::extract::Multipart, mut budget: u64) {
    while let Ok(Some(mut field)) = form.next_field().await {
        while let Ok(Some(chunk)) = field.chunk().await {
            budget = budget.saturating_sub(chunk.len() as u64);
            if budget == 0 {
                return;
            }
        }
    }
}

async fn receive(
    state: &AppState,
    user_id: i64,
    form: &mut axum::extract::Multipart,
) -> ApiResult<UploadResponse> {
    let _pass = transfer_pass(state, user_id)?;
    let mut remote_path: Option<String> = None;
    let mut session_id: Option<String> = None;
    let mut result: Option<UploadResponse> = None;
    let mut spooled: Option<Spooled> = None;
    while let Some(field) = form.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or_default().to_owned();
        match name.as_str() {
            upload_fields::FILE => {
                if result.is_some() || spooled.is_some() {
                    return Err(ApiError::BadRequest("more than one `file` part".into()));
                }
                let Some(sid) = &session_id else {
                    return Err(ApiError::Unprocessable(
                        "form field `session_id` must come before `file`: the session is checked before any file data is accepted".into(),
                    ));
                };
                match &remote_path {
                    Some(path) => {
                        let target = Target::resolve(state, user_id, sid, path).await?;
                        result = Some(target.write_field(state, field).await?);
                    }
                    None => {
                        // Not the caller's session: 404 before a byte is spooled.
                        sessions::active(state, user_id, sid).await?;
                        spooled = Some(Spooled::save(state, user_id, field).await?);
                    }
                }
            }
            upload_fields::REMOTE_PATH => remote_path = Some(text_field(field).await?),
            upload_fields::SESSION_ID => session_id = Some(text_field(field).await?),
            upload_fields::RECURSIVE => {
                // Accepted for compatibility; parent directories are always created.
                let value = text_field(field).await?;
                if value != "true" && value != "false" {
                    return Err(ApiError::Unprocessable(format!(
                        "recursive must be \"true\" or \"false\", got {value:?}"
                    )));
                }
            }
            // Unknown parts are drained and ignored, like unknown JSON fields.
            _ => drain(field).await?,
        }
    }
    let missing = |what: &str| ApiError::Unprocessable(format!("missing form field `{what}`"));
    let sid = session_id.ok_or_else(|| missing(upload_fields::SESSION_ID))?;
    let path = remote_path.ok_or_else(|| missing(upload_fields::REMOTE_PATH))?;
    if let Some(done) = result {
        return Ok(done);
    }
    let spooled = spooled.ok_or_else(|| missing(upload_fields::FILE))?;
    let target = Target::resolve(state, user_id, &sid, &path).await?;
    let (reader, _allowance) = spooled.reader().await?;
    target.write(state, reader).await
}

/// Where an upload goes.
struct Target {
    rec: instavm_store::SessionRecord,
    path: String,
}

impl Target {
    async fn resolve(state: &AppState, user_id: i64, sid: &str, path: &str) -> ApiResult<Target> {
        let path = sandbox_path(path)?;
        let rec = sessions::active(state, user_id, sid).await?;
        Ok(Target { rec, path })
    }

    async fn write(self, state: &AppState, data: ByteReader) -> ApiResult<UploadResponse> {
        let sandbox = sessions::sandbox_id(&self.rec)?;
        let written = state
            .runtime()
            .write_file(&sandbox, &self.path, data, WriteOptions::default())
            .await;
        match written {
            Ok(info) => {
                let step = crate::tapes::Step::Upload {
                    path: &info.path,
                    size: info.size,
                };
                crate::tapes::record(state, &sandbox, step).await;
                Ok(UploadResponse {
                    success: true,
                    remote_path: info.path,
                    size: info.size,
                })
            }
            Err(RuntimeError::NotFound(_) | RuntimeError::NotRunning(_)) => {
                Err(sessions::sandbox_gone(state, &self.rec).await)
            }
            Err(err) => Err(err.into()),
        }
    }

    async fn write_field(self, state: &AppState, field: Field<'_>) -> ApiResult<UploadResponse> {
        with_field_reader(field, |reader| self.write(state, reader)).await
    }
}

/// Stream a multipart field into `write`. The field borrows the form, so it cannot be handed
/// over as an owned reader: a pump forwards its chunks through a small channel while `write`
/// reads from the other end, keeping a few chunks in memory.
pub(crate) async fn with_field_reader<T, Fut>(
    mut field: Field<'_>,
    write: impl FnOnce(ByteReader) -> Fut,
) -> ApiResult<T>
where
    Fut: std::future::Future<Output = ApiResult<T>>,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(4);
    let chunks = Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    let reader: ByteReader = Box::pin(StreamReader::new(chunks));
    let pump = async move {
        loop {
            match field.chunk().await {
                Ok(Some(chunk)) => {
                    if tx.send(Ok(chunk)).await.is_err() {
                        return Ok(()); // The writer stopped reading; it reports why.
                    }
                }
                Ok(None) => return Ok(()), // Dropping `tx` ends the stream.
                Err(err) => {
                    let io_err = io::Error::new(io::ErrorKind::InvalidData, err.body_text());
                    let _ = tx.send(Err(io_err)).await;
                    return Err(multipart_error(err));
                }
            }
        }
    };
    let (pumped, written) = tokio::join!(pump, write(reader));
    // A broken request body is the clearer explanation of a failed write.
    pumped?;
    written
}

/// A file part saved to a temporary file because it came before `remote_path`. Its bytes count
/// against the user's spool allowance until it is dropped.
struct Spooled {
    file: tempfile::NamedTempFile,
    allowance: SpoolAllowance,
}

/// Bytes reserved in a user's spool allowance, given back on drop.
struct SpoolAllowance {
    state: AppState,
    user_id: i64,
    bytes: u64,
}

impl SpoolAllowance {
    fn take(&mut self, n: u64) -> ApiResult<()> {
        let max = self.state.limits().max_spool_bytes_per_user;
        if !self.state.reserve_spool(self.user_id, n, max) {
            return Err(ApiError::PayloadTooLarge(format!(
                "upload spool limit reached: at most {max} bytes of uploads waiting for their `remote_path` per user; send `remote_path` before `file` to stream the upload instead"
            )));
        }
        self.bytes += n;
        Ok(())
    }
}

impl Drop for SpoolAllowance {
    fn drop(&mut self) {
        self.state.release_spool(self.user_id, self.bytes);
    }
}

impl Spooled {
    async fn save(state: &AppState, user_id: i64, field: Field<'_>) -> ApiResult<Spooled> {
        let mut allowance = SpoolAllowance {
            state: state.clone(),
            user_id,
            bytes: 0,
        };
        let dir = state.spool_dir().clone();
        let file = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)?;
            tempfile::NamedTempFile::new_in(&dir)
        })
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| ApiError::internal(format!("creating a spool file: {e}")))?;
        let mut out = tokio::fs::File::from_std(file.reopen().map_err(ApiError::internal)?);
        let mut stream = field;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(multipart_error)?;
            allowance.take(chunk.len() as u64)?;
            out.write_all(&chunk)
                .await
                .map_err(|e| ApiError::internal(format!("spooling an upload: {e}")))?;
        }
        out.flush().await.map_err(ApiError::internal)?;
        Ok(Spooled { file, allowance })
    }

    /// Stream the spooled bytes; the temporary file is deleted once the reader is dropped
    /// (it is unlinked now and kept alive by the open handle). The allowance is held until
    /// the caller drops it, once the upload is done.
    async fn reader(self) -> ApiResult<(ByteReader, SpoolAllowance)> {
        let handle = self.file.reopen().map_err(ApiError::internal)?;
        drop(self.file);
        Ok((Box::pin(tokio::fs::File::from_std(handle)), self.allowance))
    }
}

pub(crate) async fn text_field(field: Field<'_>) -> ApiResult<String> {
    let name = field.name().unwrap_or_default().to_owned();
    let mut buf = Vec::new();
    let mut field = field;
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        if buf.len() + chunk.len() > MAX_FIELD_BYTES {
            return Err(ApiError::Unprocessable(format!(
                "form field `{name}` is longer than {MAX_FIELD_BYTES} bytes"
            )));
        }
        buf.extend_from_slice(&chunk);
    }
    String::from_utf8(buf)
        .map_err(|_| ApiError::BadRequest(format!("form field `{name}` is not valid UTF-8")))
}

async fn drain(mut field: Field<'_>) -> ApiResult<()> {
    while field.chunk().await.map_err(multipart_error)?.is_some() {}
    Ok(())
}

pub(crate) fn multipart_error(err: axum::extract::multipart::MultipartError) -> ApiError {
    ApiError::from_rejection(
        err.status(),
        format!("invalid multipart body: {}", err.body_text()),
    )
}

/// `POST /download` (form-encoded `filename`, `session_id`): answers
/// `{"filename", "content" (base64), "size"}`, encoded while the file streams out of the
/// sandbox, so a large file is never held in memory, raw or encoded.
pub async fn download(
    State(state): State<AppState>,
    Principal(user): Principal,
    ApiForm(req): ApiForm<DownloadRequest>,
) -> ApiResult<Response> {
    let path = sandbox_path(&req.filename)?;
    let rec = sessions::active(&state, user.id, &req.session_id).await?;
    let pass = transfer_pass(&state, user.id)?;
    let max = state.limits().max_download_bytes;
    let sandbox = sessions::sandbox_id(&rec)?;
    let (info, reader) = match state.runtime().read_file(&sandbox, &path).await {
        Ok(opened) => opened,
        Err(RuntimeError::NotFound(_) | RuntimeError::NotRunning(_)) => {
            return Err(sessions::sandbox_gone(&state, &rec).await)
        }
        Err(err) => return Err(err.into()),
    };
    if info.kind != FileKind::File {
        return Err(ApiError::BadRequest(format!(
            "{path} is not a regular file"
        )));
    }
    if info.size > max {
        return Err(ApiError::PayloadTooLarge(format!(
            "{path} is {} bytes; downloads are limited to {max} bytes",
            info.size
        )));
    }
    let step = crate::tapes::Step::Download {
        path: &path,
        size: info.size,
    };
    crate::tapes::record(&state, &sandbox, step).await;
    let filename = serde_json::to_string(&req.filename).map_err(ApiError::internal)?;
    let head = format!("{{\"filename\":{filename},\"content\":\"");
    let session = rec.id.clone();
    // A file that grows past the limit while it streams (its size was read first) is cut
    // off with an error rather than sent on. The transfer's place is held until the end.
    let body = base64_json_body(head, reader, max).inspect_err(move |err| {
        let _held = &pass;
        tracing::error!(session = %session, error = %err, "download stream broke off");
    });
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response())
}

/// The JSON document `head + base64(reader) + "\",\"size\":N}"` as a stream. Base64 works on
/// 3-byte groups, so up to two bytes are carried from one chunk to the next.
pub(crate) fn base64_json_body(
    head: String,
    reader: ByteReader,
    max: u64,
) -> impl Stream<Item = io::Result<Bytes>> + Send {
    enum Phase {
        Head(String),
        Body,
        Tail,
        Done,
    }
    struct Encoder {
        phase: Phase,
        chunks: ReaderStream<ByteReader>,
        carry: Vec<u8>,
        size: u64,
    }
    let start = Encoder {
        phase: Phase::Head(head),
        chunks: ReaderStream::with_capacity(reader, 48 * 1024),
        carry: Vec::with_capacity(2),
        size: 0,
    };
    futures::stream::unfold(start, move |mut e| async move {
        let b64 = base64::engine::general_purpose::STANDARD;
        loop {
            match std::mem::replace(&mut e.phase, Phase::Done) {
                Phase::Head(head) => {
                    e.phase = Phase::Body;
                    return Some((Ok(Bytes::from(head)), e));
                }
                Phase::Body => match e.chunks.next().await {
                    Some(Ok(chunk)) => {
                        e.phase = Phase::Body;
                        e.size += chunk.len() as u64;
                        if e.size > max {
                            let why = format!("the file grew past the {max}-byte download limit");
                            return Some((Err(io::Error::other(why)), e));
                        }
                        e.carry.extend_from_slice(&chunk);
                        let whole = e.carry.len() / 3 * 3;
                        if whole == 0 {
                            continue;
                        }
                        let encoded = b64.encode(&e.carry[..whole]);
                        e.carry.drain(..whole);
                        return Some((Ok(Bytes::from(encoded)), e));
                    }
                    Some(Err(err)) => return Some((Err(err), e)),
                    None => {
                        e.phase = Phase::Tail;
                        if !e.carry.is_empty() {
                            let rest = b64.encode(&e.carry);
                            e.carry.clear();
                            return Some((Ok(Bytes::from(rest)), e));
                        }
                    }
                },
                Phase::Tail => {
                    let tail = format!("\",\"size\":{}}}", e.size);
                    return Some((Ok(Bytes::from(tail)), e));
                }
                Phase::Done => return None,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_checked_and_made_absolute() {
        assert_eq!(sandbox_path("a/b.txt").unwrap(), "/app/a/b.txt");
        assert_eq!(sandbox_path("/tmp//x").unwrap(), "/tmp/x");
        assert!(matches!(
            sandbox_path("../etc/passwd"),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            sandbox_path("/a/../../b"),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(sandbox_path("a\0b"), Err(ApiError::BadRequest(_))));
        assert!(matches!(sandbox_path(""), Err(ApiError::BadRequest(_))));
    }

    #[tokio::test]
    async fn download_body_is_valid_json_with_exact_base64() {
        for len in [0usize, 1, 2, 3, 4, 100_000, 100_001] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 256) as u8).collect();
            let reader: ByteReader = Box::pin(std::io::Cursor::new(data.clone()));
            let parts: Vec<Bytes> =
                base64_json_body("{\"filename\":\"f\",\"content\":\"".into(), reader, 1 << 20)
                    .try_collect()
                    .await
                    .unwrap();
            let body: Vec<u8> = parts.concat();
            let doc: instavm_api::DownloadResponse = serde_json::from_slice(&body).unwrap();
            assert_eq!(doc.size, len as u64);
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(doc.content)
                .unwrap();
            assert_eq!(decoded, data);
        }
    }
}
