//! Persistence: SQLite store and migrations
