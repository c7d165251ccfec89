//! Shares (spec §9, §1.11).

use crate::*;

impl Client {
    /// `POST /v1/shares`: the share of a VM's port (the same one again for the same VM and
    /// port, made public or private as asked).
    pub async fn create_share(&self, req: &CreateShareRequest) -> Result<ShareRecord> {
        self.post(&["v1", "shares"], req).await
    }

    pub async fn get_share(&self, share_id: &str) -> Result<ShareRecord> {
        self.get(&["v1", "shares", share_id]).await
    }

    /// `PATCH /v1/shares/{id}`: change visibility, or revoke.
    pub async fn update_share(
        &self,
        share_id: &str,
        req: &UpdateShareRequest,
    ) -> Result<ShareRecord> {
        self.send(
            self.request(Method::PATCH, &["v1", "shares", share_id])?
                .json(req),
        )
        .await
    }

    /// `GET /v1/sessions/app-url/{id}?port=`.
    pub async fn session_app_url(&self, session_id: &str, port: u16) -> Result<AppUrl> {
        let http = self.request(Method::GET, &["v1", "sessions", "app-url", session_id])?;
        self.send(http.query(&[("port", port)])).await
    }
}
