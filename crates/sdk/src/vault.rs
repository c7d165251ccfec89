//! Secrets vaults (spec §4). No method ever receives a credential value back.

use crate::*;

impl Client {
    pub async fn list_vaults(&self) -> Result<VaultList> {
        self.get(&["v1", "vaults"]).await
    }

    pub async fn create_vault(&self, req: &CreateVaultRequest) -> Result<VaultRecord> {
        self.post(&["v1", "vaults"], req).await
    }

    pub async fn get_vault(&self, id: &str) -> Result<VaultRecord> {
        self.get(&["v1", "vaults", id]).await
    }

    pub async fn update_vault(&self, id: &str, req: &UpdateVaultRequest) -> Result<VaultRecord> {
        self.send(
            self.request(Method::PATCH, &["v1", "vaults", id])?
                .json(req),
        )
        .await
    }

    pub async fn delete_vault(&self, id: &str) -> Result<DeletedResponse> {
        self.send(self.request(Method::DELETE, &["v1", "vaults", id])?)
            .await
    }

    pub async fn discover_vault(&self, id: &str) -> Result<VaultDiscovery> {
        self.get(&["v1", "vaults", id, "discover"]).await
    }

    pub async fn vault_catalog(&self) -> Result<CatalogList> {
        self.get(&["v1", "vaults", "catalog"]).await
    }

    pub async fn list_credentials(&self, vault_id: &str) -> Result<CredentialList> {
        self.get(&["v1", "vaults", vault_id, "credentials"]).await
    }

    pub async fn add_credential(
        &self,
        vault_id: &str,
        req: &CreateCredentialRequest,
    ) -> Result<CredentialRecord> {
        self.post(&["v1", "vaults", vault_id, "credentials"], req)
            .await
    }

    pub async fn rotate_credential(
        &self,
        vault_id: &str,
        credential_id: &str,
        req: &RotateCredentialRequest,
    ) -> Result<CredentialRecord> {
        self.post(
            &[
                "v1",
                "vaults",
                vault_id,
                "credentials",
                credential_id,
                "rotate",
            ],
            req,
        )
        .await
    }

    pub async fn delete_credential(
        &self,
        vault_id: &str,
        credential_id: &str,
    ) -> Result<DeletedResponse> {
        self.send(self.request(
            Method::DELETE,
            &["v1", "vaults", vault_id, "credentials", credential_id],
        )?)
        .await
    }

    pub async fn list_services(&self, vault_id: &str) -> Result<ServiceList> {
        self.get(&["v1", "vaults", vault_id, "services"]).await
    }

    pub async fn add_service(
        &self,
        vault_id: &str,
        req: &CreateServiceRequest,
    ) -> Result<ServiceRecord> {
        self.post(&["v1", "vaults", vault_id, "services"], req)
            .await
    }

    /// `POST .../services:from_template` (the colon is part of the segment).
    pub async fn add_services_from_templates(
        &self,
        vault_id: &str,
        template_ids: &[String],
    ) -> Result<FromTemplateResponse> {
        let seg = "services:from_template";
        self.post(
            &["v1", "vaults", vault_id, seg],
            &FromTemplateRequest {
                template_ids: Some(template_ids.to_vec()),
            },
        )
        .await
    }

    pub async fn delete_service(
        &self,
        vault_id: &str,
        service_id: &str,
    ) -> Result<DeletedResponse> {
        self.send(self.request(
            Method::DELETE,
            &["v1", "vaults", vault_id, "services", service_id],
        )?)
        .await
    }

    pub async fn vault_request_logs(&self, vault_id: &str, limit: i64) -> Result<RequestLogList> {
        let http = self.request(Method::GET, &["v1", "vaults", vault_id, "request-logs"])?;
        self.send(http.query(&[("limit", limit)])).await
    }
}
