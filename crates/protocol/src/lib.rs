//! Host <-> guest agent frames and messages
