//! Wire types shared by the server, the SDK and the CLI (spec/api.md)
