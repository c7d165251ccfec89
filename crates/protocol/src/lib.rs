//! The host <-> guest agent protocol.
//!
//! One unix-socket connection carries a sequence of request/response exchanges. Every unit on the
//! wire is a frame: an 8-byte header then `len` payload bytes.
//!
//! ```text
//! byte 0     'I' (magic)
//! byte 1     protocol version (VERSION)
//! byte 2     kind: 1 = JSON message, 2 = data chunk, 3 = end of data
//! byte 3     reserved, 0
//! bytes 4-7  payload length, u32 little-endian (at most MAX_FRAME)
//! ```
//!
//! A request is one JSON frame ([`Request`]); uploads follow it with data frames and an end frame.
//! A response is one JSON frame ([`Response`]); downloads follow it with data frames and an end
//! frame, and an execution result with its stdout and stderr as raw data frames (an end frame
//! after each). Either side refuses a frame with the wrong magic, an unknown version or an oversized
//! length, so a confused or hostile peer can never make the other allocate without bound.

mod frame;
mod message;
mod pty;

pub use frame::*;
pub use message::*;
pub use pty::*;
