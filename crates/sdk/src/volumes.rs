//! Volumes, checkpoints, volume files (spec §16) and VM mounts (§6.12 to §6.14).

use crate::*;

fn flag(b: bool) -> &'static str {
    if b {
        "true"
    } else {
        "false"
    }
}

impl Client {
    pub async fn create_volume(&self, name: &str, quota_bytes: u64) -> Result<VolumeRecord> {
        let req = CreateVolumeRequest {
            name: Some(name.to_owned()),
            quota_bytes: Some(quota_bytes),
        };
        self.post(&["v1", "volumes"], &req).await
    }

    /// `GET /v1/volumes?refresh_usage=`: `refresh` reads the used sizes anew.
    pub async fn list_volumes(&self, refresh: bool) -> Result<Vec<VolumeRecord>> {
        let http = self.request(Method::GET, &["v1", "volumes"])?;
        self.send(http.query(&[("refresh_usage", flag(refresh))]))
            .await
    }

    pub async fn get_volume(&self, volume_id: &str, refresh: bool) -> Result<VolumeRecord> {
        let http = self.request(Method::GET, &["v1", "volumes", volume_id])?;
        self.send(http.query(&[("refresh_usage", flag(refresh))]))
            .await
    }

    pub async fn update_volume(
        &self,
        volume_id: &str,
        req: &UpdateVolumeRequest,
    ) -> Result<VolumeRecord> {
        let http = self.request(Method::PATCH, &["v1", "volumes", volume_id])?;
        self.send(http.json(req)).await
    }

    pub async fn delete_volume(&self, volume_id: &str) -> Result<DeleteVolumeResponse> {
        self.send(self.request(Method::DELETE, &["v1", "volumes", volume_id])?)
            .await
    }

    pub async fn create_checkpoint(
        &self,
        volume_id: &str,
        name: Option<&str>,
    ) -> Result<CheckpointRecord> {
        let req = CreateCheckpointRequest {
            name: name.map(str::to_owned),
        };
        self.post(&["v1", "volumes", volume_id, "checkpoints"], &req)
            .await
    }

    /// Newest first.
    pub async fn list_checkpoints(&self, volume_id: &str) -> Result<Vec<CheckpointRecord>> {
        self.get(&["v1", "volumes", volume_id, "checkpoints"]).await
    }

    pub async fn delete_checkpoint(
        &self,
        volume_id: &str,
        checkpoint_id: &str,
    ) -> Result<DeleteCheckpointResponse> {
        let path = ["v1", "volumes", volume_id, "checkpoints", checkpoint_id];
        self.send(self.request(Method::DELETE, &path)?).await
    }

    /// Upload a local file to `path` in the volume, streamed from disk.
    pub async fn upload_volume_file(
        &self,
        volume_id: &str,
        local: &Path,
        path: &str,
        overwrite: bool,
    ) -> Result<VolumeUploadResponse> {
        let file = tokio::fs::File::open(local)
            .await
            .map_err(|e| Error::Invalid(format!("cannot open {}: {e}", local.display())))?;
        let len = file
            .metadata()
            .await
            .map_err(|e| Error::Invalid(format!("cannot read {}: {e}", local.display())))?
            .len();
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
        let part = reqwest::multipart::Part::stream_with_length(body, len)
            .file_name(local.display().to_string());
        // Destination first: the server checks it before accepting file bytes.
        let form = reqwest::multipart::Form::new()
            .text(volume_upload_fields::PATH, path.to_owned())
            .text(volume_upload_fields::OVERWRITE, flag(overwrite))
            .part(volume_upload_fields::FILE, part);
        let http = self.request(
            Method::POST,
            &["v1", "volumes", volume_id, "files", "upload"],
        )?;
        self.send(http.multipart(form)).await
    }

    /// The download answer (`content` is base64) and the decoded bytes.
    pub async fn download_volume_file(
        &self,
        volume_id: &str,
        path: &str,
    ) -> Result<(VolumeDownloadResponse, Vec<u8>)> {
        let req = VolumeDownloadRequest {
            path: Some(path.to_owned()),
        };
        let res: VolumeDownloadResponse = self
            .post(&["v1", "volumes", volume_id, "files", "download"], &req)
            .await?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&res.content)
            .map_err(|e| Error::Decode(format!("download content is not base64: {e}")))?;
        Ok((res, bytes))
    }

    pub async fn list_volume_files(
        &self,
        volume_id: &str,
        prefix: &str,
        recursive: bool,
        limit: usize,
    ) -> Result<Vec<VolumeFile>> {
        let http = self.request(Method::GET, &["v1", "volumes", volume_id, "files"])?;
        let limit = limit.to_string();
        let q = [
            ("prefix", prefix),
            ("recursive", flag(recursive)),
            ("limit", limit.as_str()),
        ];
        self.send(http.query(&q)).await
    }

    pub async fn delete_volume_file(
        &self,
        volume_id: &str,
        path: &str,
    ) -> Result<DeleteFileResponse> {
        let http = self.request(Method::DELETE, &["v1", "volumes", volume_id, "files"])?;
        self.send(http.query(&[("path", path)])).await
    }

    /// `POST /v1/vms/{id}/volumes`: mount into a running VM.
    pub async fn mount_volume(&self, vm_id: &str, req: &MountVolumeRequest) -> Result<MountRecord> {
        let http = self.request(Method::POST, &["v1", "vms", vm_id, "volumes"])?;
        self.send(http.query(&[("wait", "true")]).json(req)).await
    }

    pub async fn vm_volumes(&self, vm_id: &str) -> Result<Vec<MountRecord>> {
        self.get(&["v1", "vms", vm_id, "volumes"]).await
    }

    pub async fn unmount_volume(
        &self,
        vm_id: &str,
        volume_id: &str,
        mount_path: &str,
    ) -> Result<UnmountResponse> {
        let http = self.request(Method::DELETE, &["v1", "vms", vm_id, "volumes", volume_id])?;
        self.send(http.query(&[("mount_path", mount_path), ("wait", "true")]))
            .await
    }
}
