//! The SFTP subsystem (so plain `scp` and `sftp` work, not only `scp -O`), over the runtime's
//! whole-file calls. SFTP reads and writes at offsets, so an open file lives in an anonymous
//! host temp file in the spool directory: a file opened for reading is fetched at `open`, one
//! opened for writing is sent to the VM at `close`. Directory changes run as shell commands in
//! the VM. Relative paths are relative to `/root`, as with a real sshd.

use crate::vm_shell::{quote, run as sh};
use instavm_runtime::{
    normalize_sandbox_path, ByteReader, FileInfo, FileKind, Runtime, RuntimeError, SandboxId,
    WriteOptions,
};
use russh_sftp::protocol::{
    Attrs, Data, File, FileAttributes, Handle, Name, OpenFlags, Status, StatusCode, Version,
};
use russh_sftp::server::StatusReply;
use std::collections::HashMap;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::AsyncReadExt;

const HOME: &str = "/root";
/// Largest file one SFTP open may hold on the host.
pub const MAX_FILE: u64 = 4 << 30;
/// Most files and directories one SFTP session may have open.
const MAX_HANDLES: usize = 64;

enum Open {
    Read(std::fs::File),
    Write {
        file: std::fs::File,
        path: String,
        mode: u32,
    },
    Dir(Option<Vec<File>>),
}

pub struct Session {
    pub runtime: Arc<dyn Runtime>,
    pub sandbox: SandboxId,
    pub spool: PathBuf,
    handles: HashMap<String, Open>,
    next: u64,
}

impl Session {
    pub fn new(runtime: Arc<dyn Runtime>, sandbox: SandboxId, spool: PathBuf) -> Self {
        Session {
            runtime,
            sandbox,
            spool,
            handles: HashMap::new(),
            next: 0,
        }
    }

    fn add(&mut self, open: Open) -> Result<String, StatusReply> {
        if self.handles.len() >= MAX_HANDLES {
            return Err(failure(format!(
                "at most {MAX_HANDLES} open files per session"
            )));
        }
        self.next += 1;
        let handle = format!("h{}", self.next);
        self.handles.insert(handle.clone(), open);
        Ok(handle)
    }

    fn temp(&self) -> Result<std::fs::File, StatusReply> {
        std::fs::create_dir_all(&self.spool).map_err(|e| failure(e.to_string()))?;
        tempfile::tempfile_in(&self.spool).map_err(|e| failure(e.to_string()))
    }

    /// Copy a VM file into a host temp file.
    async fn fetch(&self, path: &str) -> Result<std::fs::File, StatusReply> {
        let (info, mut reader) = self
            .runtime
            .read_file(&self.sandbox, path)
            .await
            .map_err(runtime_error)?;
        if info.size > MAX_FILE {
            return Err(failure(format!("{path}: larger than {MAX_FILE} bytes")));
        }
        let mut file = self.temp()?;
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = reader
                .read(&mut buf)
                .await
                .map_err(|e| failure(e.to_string()))?;
            if n == 0 {
                break;
            }
            file.write_all(&buf[..n])
                .map_err(|e| failure(e.to_string()))?;
        }
        Ok(file)
    }

    /// A file-system change as a shell command in the VM; its stderr becomes the error.
    async fn change(&self, id: u32, command: String) -> Result<Status, StatusReply> {
        sh(&self.runtime, &self.sandbox, &command)
            .await
            .map_err(failure)?;
        Ok(ok(id))
    }

    async fn stat_path(&self, path: &str) -> Result<FileInfo, StatusReply> {
        self.runtime
            .stat(&self.sandbox, path)
            .await
            .map_err(runtime_error)
    }
}

fn failure(message: impl Into<String>) -> StatusReply {
    StatusReply::new(StatusCode::Failure).with_message(message)
}

fn runtime_error(e: RuntimeError) -> StatusReply {
    match e {
        RuntimeError::FileNotFound(p) => {
            StatusReply::new(StatusCode::NoSuchFile).with_message(format!("{p}: No such file"))
        }
        RuntimeError::InvalidPath(m) | RuntimeError::WrongFileType(m) => failure(m),
        RuntimeError::QuotaExceeded(m) => failure(format!("disk quota exceeded: {m}")),
        other => failure(other.to_string()),
    }
}

fn absolute(path: &str) -> Result<String, StatusReply> {
    let path = if path.is_empty() { "." } else { path };
    normalize_sandbox_path(path, HOME).map_err(|e| failure(e.to_string()))
}

fn ok(id: u32) -> Status {
    Status {
        id,
        status_code: StatusCode::Ok,
        error_message: "Ok".into(),
        language_tag: "en-US".into(),
    }
}

fn attrs_of(info: &FileInfo) -> FileAttributes {
    let kind = match info.kind {
        FileKind::Dir => 0o040000,
        FileKind::Symlink => 0o120000,
        _ => 0o100000,
    };
    FileAttributes {
        size: Some(info.size),
        uid: Some(0),
        user: None,
        gid: Some(0),
        group: None,
        permissions: Some(kind | (info.mode & 0o7777)),
        atime: Some(info.modified.max(0) as u32),
        mtime: Some(info.modified.max(0) as u32),
    }
}

fn file_len(file: &std::fs::File) -> Result<u64, StatusReply> {
    file.metadata()
        .map(|m| m.len())
        .map_err(|e| failure(e.to_string()))
}

impl russh_sftp::server::Handler for Session {
    type Error = StatusReply;

    fn unimplemented(&self) -> StatusReply {
        StatusReply::new(StatusCode::OpUnsupported)
    }

    async fn init(
        &mut self,
        _version: u32,
        _extensions: HashMap<String, String>,
    ) -> Result<Version, StatusReply> {
        Ok(Version::new())
    }

    async fn open(
        &mut self,
        id: u32,
        filename: String,
        pflags: OpenFlags,
        attrs: FileAttributes,
    ) -> Result<Handle, StatusReply> {
        let path = absolute(&filename)?;
        let writing = pflags.intersects(
            OpenFlags::WRITE | OpenFlags::APPEND | OpenFlags::CREATE | OpenFlags::TRUNCATE,
        );
        let open = if !writing {
            Open::Read(self.fetch(&path).await?)
        } else {
            let existing = self.stat_path(&path).await.ok();
            if existing.is_some() && pflags.contains(OpenFlags::EXCLUDE) {
                return Err(failure(format!("{path}: File exists")));
            }
            if existing.is_none() && !pflags.contains(OpenFlags::CREATE) {
                return Err(StatusReply::new(StatusCode::NoSuchFile));
            }
            let keep = existing.is_some() && !pflags.contains(OpenFlags::TRUNCATE);
            let file = if keep {
                self.fetch(&path).await?
            } else {
                self.temp()?
            };
            let mode = attrs
                .permissions
                .map(|p| p & 0o7777)
                .or(existing.map(|e| e.mode & 0o7777))
                .unwrap_or(0o644);
            Open::Write { file, path, mode }
        };
        Ok(Handle {
            id,
            handle: self.add(open)?,
        })
    }

    async fn close(&mut self, id: u32, handle: String) -> Result<Status, StatusReply> {
        match self.handles.remove(&handle) {
            Some(Open::Write {
                mut file,
                path,
                mode,
            }) => {
                file.seek(SeekFrom::Start(0))
                    .map_err(|e| failure(e.to_string()))?;
                // Streamed from the host file, never held in memory.
                let reader: ByteReader = Box::pin(tokio::fs::File::from_std(file));
                let opts = WriteOptions {
                    create_parents: false,
                    mode: Some(mode),
                };
                self.runtime
                    .write_file(&self.sandbox, &path, reader, opts)
                    .await
                    .map_err(runtime_error)?;
                Ok(ok(id))
            }
            Some(_) => Ok(ok(id)),
            None => Err(failure("no such handle")),
        }
    }

    async fn read(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        len: u32,
    ) -> Result<Data, StatusReply> {
        let file = match self.handles.get(&handle) {
            Some(Open::Read(f)) | Some(Open::Write { file: f, .. }) => f,
            _ => return Err(failure("not an open file")),
        };
        let mut buf = vec![0u8; len.min(256 << 10) as usize];
        let n = file
            .read_at(&mut buf, offset)
            .map_err(|e| failure(e.to_string()))?;
        if n == 0 {
            return Err(StatusReply::new(StatusCode::Eof));
        }
        buf.truncate(n);
        Ok(Data { id, data: buf })
    }

    async fn write(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        data: Vec<u8>,
    ) -> Result<Status, StatusReply> {
        let Some(Open::Write { file, .. }) = self.handles.get(&handle) else {
            return Err(failure("not a file open for writing"));
        };
        if offset.saturating_add(data.len() as u64) > MAX_FILE {
            return Err(failure(format!("files over {MAX_FILE} bytes are refused")));
        }
        file.write_all_at(&data, offset)
            .map_err(|e| failure(e.to_string()))?;
        Ok(ok(id))
    }

    async fn lstat(&mut self, id: u32, path: String) -> Result<Attrs, StatusReply> {
        self.stat(id, path).await
    }

    async fn stat(&mut self, id: u32, path: String) -> Result<Attrs, StatusReply> {
        let info = self.stat_path(&absolute(&path)?).await?;
        Ok(Attrs {
            id,
            attrs: attrs_of(&info),
        })
    }

    async fn fstat(&mut self, id: u32, handle: String) -> Result<Attrs, StatusReply> {
        match self.handles.get(&handle) {
            Some(Open::Read(f)) => Ok(Attrs {
                id,
                attrs: FileAttributes {
                    size: Some(file_len(f)?),
                    permissions: Some(0o100644),
                    ..FileAttributes::empty()
                },
            }),
            Some(Open::Write { file, mode, .. }) => Ok(Attrs {
                id,
                attrs: FileAttributes {
                    size: Some(file_len(file)?),
                    permissions: Some(0o100000 | mode),
                    ..FileAttributes::empty()
                },
            }),
            _ => Err(failure("not an open file")),
        }
    }

    async fn setstat(
        &mut self,
        id: u32,
        path: String,
        attrs: FileAttributes,
    ) -> Result<Status, StatusReply> {
        let path = absolute(&path)?;
        match attrs.permissions {
            // Owners and times are not changed; a mode is.
            Some(p) => {
                let cmd = format!("chmod {:o} -- {}", p & 0o7777, quote(&path));
                self.change(id, cmd).await
            }
            None => Ok(ok(id)),
        }
    }

    async fn fsetstat(
        &mut self,
        id: u32,
        handle: String,
        attrs: FileAttributes,
    ) -> Result<Status, StatusReply> {
        if let (Some(Open::Write { mode, .. }), Some(p)) =
            (self.handles.get_mut(&handle), attrs.permissions)
        {
            *mode = p & 0o7777;
        }
        Ok(ok(id))
    }

    async fn opendir(&mut self, id: u32, path: String) -> Result<Handle, StatusReply> {
        let path = absolute(&path)?;
        let entries = self
            .runtime
            .list_dir(&self.sandbox, &path, false)
            .await
            .map_err(runtime_error)?;
        let files = entries
            .iter()
            .map(|e| {
                let name = e.path.rsplit('/').next().unwrap_or(&e.path).to_string();
                File::new(name, attrs_of(e))
            })
            .collect();
        Ok(Handle {
            id,
            handle: self.add(Open::Dir(Some(files)))?,
        })
    }

    async fn readdir(&mut self, id: u32, handle: String) -> Result<Name, StatusReply> {
        match self.handles.get_mut(&handle) {
            Some(Open::Dir(entries)) => match entries.take() {
                Some(files) => Ok(Name { id, files }),
                None => Err(StatusReply::new(StatusCode::Eof)),
            },
            _ => Err(failure("not an open directory")),
        }
    }

    async fn remove(&mut self, id: u32, filename: String) -> Result<Status, StatusReply> {
        let path = absolute(&filename)?;
        let cmd = format!("rm -- {}", quote(&path));
        self.change(id, cmd).await
    }

    async fn mkdir(
        &mut self,
        id: u32,
        path: String,
        attrs: FileAttributes,
    ) -> Result<Status, StatusReply> {
        let path = absolute(&path)?;
        let mode = attrs.permissions.map_or(0o755, |p| p & 0o7777);
        let cmd = format!("mkdir -m {mode:o} -- {}", quote(&path));
        self.change(id, cmd).await
    }

    async fn rmdir(&mut self, id: u32, path: String) -> Result<Status, StatusReply> {
        let path = absolute(&path)?;
        let cmd = format!("rmdir -- {}", quote(&path));
        self.change(id, cmd).await
    }

    async fn realpath(&mut self, id: u32, path: String) -> Result<Name, StatusReply> {
        Ok(Name {
            id,
            files: vec![File::dummy(absolute(&path)?)],
        })
    }

    async fn rename(
        &mut self,
        id: u32,
        oldpath: String,
        newpath: String,
    ) -> Result<Status, StatusReply> {
        let cmd = format!(
            "mv -- {} {}",
            quote(&absolute(&oldpath)?),
            quote(&absolute(&newpath)?)
        );
        self.change(id, cmd).await
    }
}
