//! Audit events (spec §14).

use crate::*;

impl Client {
    pub async fn audit_catalog(&self) -> Result<AuditCatalog> {
        self.get(&["v1", "audit", "catalog"]).await
    }

    /// One page, newest first; pass `next_cursor` back as `cursor` for older events.
    pub async fn audit_events(&self, query: &AuditQuery) -> Result<AuditEventPage> {
        let http = self.request(Method::GET, &["v1", "audit", "events"])?;
        self.send(http.query(query)).await
    }

    pub async fn audit_event(&self, event_id: &str) -> Result<AuditEvent> {
        self.get(&["v1", "audit", "events", event_id]).await
    }
}
