//! The instavm control plane: HTTP API over the runtime and the store
