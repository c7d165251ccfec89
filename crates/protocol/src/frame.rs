use std::io::{self, Read, Write};

pub const MAGIC: u8 = b'I';
/// 2: execution output travels as raw data frames after the result header (1 carried it as
/// JSON strings). Host and agent ship together, so there is no negotiation.
pub const VERSION: u8 = 2;
pub const HEADER_LEN: usize = 8;
/// Largest payload of one frame: a request may carry a cell's code (up to the API's 64 MiB body,
/// escaped). Bulk bytes (files, execution output) travel in [`CHUNK`]-sized data frames, so a
/// reader that expects no big message passes a lower bound (`read_frame_async_max`).
pub const MAX_FRAME: usize = 256 << 20;
/// Size of the data chunks used for file transfers and execution output.
pub const CHUNK: usize = 64 << 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    Json = 1,
    Data = 2,
    End = 3,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    pub kind: FrameKind,
    pub payload: Vec<u8>,
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

pub fn encode_header(kind: FrameKind, len: usize) -> io::Result<[u8; HEADER_LEN]> {
    if len > MAX_FRAME {
        return Err(invalid(format!("frame of {len} bytes exceeds {MAX_FRAME}")));
    }
    let l = (len as u32).to_le_bytes();
    Ok([MAGIC, VERSION, kind as u8, 0, l[0], l[1], l[2], l[3]])
}

/// Validate a header and return the frame kind and payload length.
pub fn decode_header(h: &[u8; HEADER_LEN]) -> io::Result<(FrameKind, usize)> {
    if h[0] != MAGIC {
        return Err(invalid(format!("bad frame magic {:#04x}", h[0])));
    }
    if h[1] != VERSION {
        return Err(invalid(format!(
            "protocol version {} not supported (this side speaks {VERSION})",
            h[1]
        )));
    }
    let kind = match h[2] {
        1 => FrameKind::Json,
        2 => FrameKind::Data,
        3 => FrameKind::End,
        k => return Err(invalid(format!("unknown frame kind {k}"))),
    };
    let len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as usize;
    if len > MAX_FRAME {
        return Err(invalid(format!("frame of {len} bytes exceeds {MAX_FRAME}")));
    }
    Ok((kind, len))
}

/// Blocking write of one frame (the agent side).
pub fn write_frame(w: &mut impl Write, kind: FrameKind, payload: &[u8]) -> io::Result<()> {
    let header = encode_header(kind, payload.len())?;
    // One buffer, one write: small frames then cost a single syscall.
    let mut buf = Vec::with_capacity(HEADER_LEN + payload.len());
    buf.extend_from_slice(&header);
    buf.extend_from_slice(payload);
    w.write_all(&buf)
}

pub fn write_json<T: serde::Serialize>(w: &mut impl Write, msg: &T) -> io::Result<()> {
    let payload = serde_json::to_vec(msg).map_err(|e| invalid(e.to_string()))?;
    write_frame(w, FrameKind::Json, &payload)
}

/// Blocking read of one frame. `Ok(None)` on a clean end of stream before a header.
pub fn read_frame(r: &mut impl Read) -> io::Result<Option<Frame>> {
    let mut header = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        match r.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let (kind, len) = decode_header(&header)?;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    Ok(Some(Frame { kind, payload }))
}

pub fn parse_json<T: serde::de::DeserializeOwned>(frame: &Frame) -> io::Result<T> {
    if frame.kind != FrameKind::Json {
        return Err(invalid(format!(
            "expected a JSON frame, got {:?}",
            frame.kind
        )));
    }
    serde_json::from_slice(&frame.payload).map_err(|e| invalid(format!("bad message: {e}")))
}

#[cfg(feature = "tokio")]
mod async_io {
    use super::*;
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

    pub async fn write_frame_async(
        w: &mut (impl AsyncWrite + Unpin),
        kind: FrameKind,
        payload: &[u8],
    ) -> io::Result<()> {
        let header = encode_header(kind, payload.len())?;
        if payload.len() <= 4096 {
            let mut buf = Vec::with_capacity(HEADER_LEN + payload.len());
            buf.extend_from_slice(&header);
            buf.extend_from_slice(payload);
            w.write_all(&buf).await
        } else {
            w.write_all(&header).await?;
            w.write_all(payload).await
        }
    }

    pub async fn write_json_async<T: serde::Serialize>(
        w: &mut (impl AsyncWrite + Unpin),
        msg: &T,
    ) -> io::Result<()> {
        let payload = serde_json::to_vec(msg).map_err(|e| invalid(e.to_string()))?;
        write_frame_async(w, FrameKind::Json, &payload).await
    }

    /// Async read of one frame. `Ok(None)` on a clean end of stream before a header.
    pub async fn read_frame_async(r: &mut (impl AsyncRead + Unpin)) -> io::Result<Option<Frame>> {
        read_frame_async_max(r, MAX_FRAME).await
    }

    /// [`read_frame_async`] refusing payloads over `max` bytes before allocating anything.
    pub async fn read_frame_async_max(
        r: &mut (impl AsyncRead + Unpin),
        max: usize,
    ) -> io::Result<Option<Frame>> {
        let mut header = [0u8; HEADER_LEN];
        let mut got = 0;
        while got < HEADER_LEN {
            match r.read(&mut header[got..]).await? {
                0 if got == 0 => return Ok(None),
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => got += n,
            }
        }
        let (kind, len) = decode_header(&header)?;
        if len > max {
            return Err(invalid(format!("frame of {len} bytes exceeds {max}")));
        }
        let mut payload = vec![0u8; len];
        r.read_exact(&mut payload).await?;
        Ok(Some(Frame { kind, payload }))
    }
}

#[cfg(feature = "tokio")]
pub use async_io::*;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let mut buf = Vec::new();
        write_frame(&mut buf, FrameKind::Data, b"abc").unwrap();
        write_frame(&mut buf, FrameKind::End, b"").unwrap();
        let mut r = &buf[..];
        let f = read_frame(&mut r).unwrap().unwrap();
        assert_eq!(
            (f.kind, f.payload.as_slice()),
            (FrameKind::Data, &b"abc"[..])
        );
        assert_eq!(read_frame(&mut r).unwrap().unwrap().kind, FrameKind::End);
        assert!(read_frame(&mut r).unwrap().is_none());

        let mut bad = buf.clone();
        bad[1] = 99;
        assert!(read_frame(&mut &bad[..])
            .unwrap_err()
            .to_string()
            .contains("version 99"));
        let mut huge = [MAGIC, VERSION, 1, 0, 0, 0, 0, 0];
        huge[4..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(read_frame(&mut &huge[..]).is_err());
        assert!(read_frame(&mut &buf[..5]).is_err());
    }
}
