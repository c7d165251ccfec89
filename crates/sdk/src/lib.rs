//! Typed Rust client for the InstaVM API
