//! Harness for end-to-end tests: the real `instavm` binary, started as `instavm server` on
//! 127.0.0.1:0 with a temporary data directory, in its own process group.
//!
//! - the bound address is read from the server's log line (never a fixed port);
//! - readiness is `/health` answering 200, polled against a deadline (never a bare sleep);
//! - on drop the process group is killed, `instavm server purge` releases the sandboxes and
//!   mounts of the data directory, and only then is the directory deleted.
//!
//! All servers share one images directory (`<target>/instavm-images`, or
//! `INSTAVM_IMAGES_DIR`), so the base image is built once per machine. The runtime is the
//! namespace one; `INSTAVM_E2E_RUNTIME=fake` runs the server on the fake runtime instead (only
//! useful for the tests and benchmark parts that run no code).

#![allow(dead_code)] // Each test binary uses a different part of the harness.

use instavm_sdk::{Client, StartSessionRequest};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_instavm");

/// The first start may build the base image (about a minute; more on a slow CI machine).
const READY_DEADLINE: Duration = Duration::from_secs(900);
const LISTEN_DEADLINE: Duration = Duration::from_secs(120);

/// Only one server at a time waits for its first `/health`: the first one may be building the
/// shared base image, and the others then find it ready.
static FIRST_READY: Mutex<()> = Mutex::new(());

pub struct TestServer {
    pub base_url: String,
    pub admin_key: String,
    child: Option<Child>,
    data_dir: Option<tempfile::TempDir>,
    home: tempfile::TempDir,
    images_dir: PathBuf,
    log_path: PathBuf,
    runtime: String,
    /// Extra `instavm server` flags (limits).
    extra_args: Vec<String>,
}

pub fn images_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("INSTAVM_IMAGES_DIR") {
        return PathBuf::from(dir);
    }
    // <target>/<profile>/instavm -> <target>/instavm-images
    let bin = Path::new(BIN);
    bin.parent()
        .and_then(Path::parent)
        .map(|target| target.join("instavm-images"))
        .unwrap_or_else(|| std::env::temp_dir().join("instavm-images"))
}

impl TestServer {
    /// A server on the real runtime (or `INSTAVM_E2E_RUNTIME`), ready to create sandboxes.
    pub fn start() -> TestServer {
        Self::start_with(&[])
    }

    /// [`TestServer::start`] with extra `instavm server` flags.
    pub fn start_with(extra_args: &[&str]) -> TestServer {
        let runtime = std::env::var("INSTAVM_E2E_RUNTIME").unwrap_or_else(|_| "namespaces".into());
        let data_dir = tempfile::Builder::new()
            .prefix("instavm-e2e-")
            .tempdir()
            .expect("temp data dir");
        let log_path = data_dir.path().with_extension("log");
        let mut server = TestServer {
            base_url: String::new(),
            admin_key: format!("e2e-admin-{}", uuid::Uuid::new_v4().simple()),
            child: None,
            data_dir: Some(data_dir),
            home: tempfile::tempdir().expect("temp home"),
            images_dir: images_dir(),
            log_path,
            runtime,
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
        };
        server.spawn();
        server
    }

    pub fn data_dir(&self) -> &Path {
        self.data_dir.as_ref().expect("data dir").path()
    }

    fn spawn(&mut self) {
        if self.runtime == "namespaces" && std::env::var_os("INSTAVM_AGENT_PATH").is_none() {
            let agent = Path::new(BIN).with_file_name("instavm-agent");
            assert!(
                agent.exists(),
                "{} is missing: build the workspace first (`cargo build --workspace`, with \
                 --release for release tests), or set INSTAVM_AGENT_PATH",
                agent.display()
            );
        }
        std::fs::create_dir_all(&self.images_dir).expect("images dir");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("server log");
        let start_offset = log.metadata().map(|m| m.len()).unwrap_or(0);
        let child = Command::new(BIN)
            .args([
                "server",
                "--listen",
                "127.0.0.1:0",
                "--ssh-listen",
                "127.0.0.1:0",
                "--runtime",
                &self.runtime,
            ])
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--images-dir")
            .arg(&self.images_dir)
            .args(&self.extra_args)
            .env("INSTAVM_ADMIN_API_KEY", &self.admin_key)
            .env("INSTAVM_LOG", "info")
            .env_remove("INSTAVM_LISTEN")
            .env_remove("INSTAVM_SSH_LISTEN")
            .env_remove("INSTAVM_DATA_DIR")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("spawn instavm server");
        self.child = Some(child);
        self.base_url = self.wait_for_address(start_offset);
        self.wait_until_ready();
    }

    /// The address from `instavm server listening on http://ADDR` in this run's log.
    fn wait_for_address(&mut self, offset: u64) -> String {
        let deadline = Instant::now() + LISTEN_DEADLINE;
        loop {
            let log = std::fs::read(&self.log_path).unwrap_or_default();
            let text = String::from_utf8_lossy(&log[offset as usize..]);
            if let Some(line) = text
                .lines()
                .find(|l| l.starts_with("instavm server listening on "))
            {
                return line
                    .trim_start_matches("instavm server listening on ")
                    .trim()
                    .to_owned();
            }
            self.assert_running();
            assert!(
                Instant::now() < deadline,
                "the server did not report its address in time:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_until_ready(&mut self) {
        let _one_at_a_time = FIRST_READY.lock().unwrap_or_else(|e| e.into_inner());
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            if http_status(&self.base_url, "/health") == Some(200) {
                return;
            }
            self.assert_running();
            assert!(
                Instant::now() < deadline,
                "/health did not answer 200 in time:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn assert_running(&mut self) {
        if let Some(child) = &mut self.child {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the server exited early ({status}):\n{}", self.log());
            }
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The SSH gateway's address from the newest `instavm SSH gateway listening on ADDR` line.
    #[allow(dead_code)]
    pub fn ssh_addr(&self) -> Option<std::net::SocketAddr> {
        self.log()
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("instavm SSH gateway listening on "))
            .and_then(|a| a.trim().parse().ok())
    }

    fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    /// The server's resident memory now and at its peak (`VmRSS`, `VmHWM`), in bytes.
    pub fn rss(&self) -> (u64, u64) {
        let pid = self.pid().expect("server running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<u64>().ok())
                .map_or(0, |kib| kib << 10)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// Simulate a crash: SIGKILL the server process only (its sandboxes keep running).
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start the server again on the same data directory.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "kill the server first");
        self.spawn();
    }

    /// Destroy the data directory's sandboxes while the server is down.
    pub fn purge(&self) {
        let out = Command::new(BIN)
            .args(["server", "purge", "--data-dir"])
            .arg(self.data_dir())
            .arg("--images-dir")
            .arg(&self.images_dir)
            .output()
            .expect("run instavm server purge");
        assert!(
            out.status.success(),
            "purge failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn admin(&self) -> Client {
        Client::new(&self.base_url, Some(self.admin_key.clone())).expect("client")
    }

    /// A new user; returns its client and key.
    pub async fn user(&self, email: &str) -> (Client, String) {
        let created = self
            .admin()
            .create_user(email, None)
            .await
            .expect("create user");
        let client = Client::new(&self.base_url, Some(created.api_key.clone())).expect("client");
        (client, created.api_key)
    }

    /// The `instavm` CLI with a private HOME and this server as its base URL.
    pub fn cli(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.env("HOME", self.home.path())
            .env("INSTAVM_BASE_URL", &self.base_url)
            .env_remove("INSTAVM_API_KEY")
            .env_remove("INSTAVM_ADMIN_API_KEY")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        cmd
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            // SAFETY: kill(2) with a negative pid signals the process group this harness
            // created for the server (`process_group(0)`); it touches no memory.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
        if self.data_dir.is_some() {
            let out = Command::new(BIN)
                .args(["server", "purge", "--data-dir"])
                .arg(self.data_dir())
                .arg("--images-dir")
                .arg(&self.images_dir)
                .output();
            match out {
                Ok(o) if o.status.success() => {}
                Ok(o) => eprintln!("purge failed: {}", String::from_utf8_lossy(&o.stderr)),
                Err(e) => eprintln!("purge failed: {e}"),
            }
        }
        if std::thread::panicking() {
            eprintln!(
                "--- server log ({}) ---\n{}",
                self.log_path.display(),
                self.log()
            );
        } else {
            let _ = std::fs::remove_file(&self.log_path);
        }
        // Dropping the TempDir deletes the data directory now that nothing holds it.
        self.data_dir.take();
    }
}

/// A session with default settings.
pub async fn session(client: &Client) -> String {
    client
        .start_session(&StartSessionRequest::default())
        .await
        .expect("start session")
        .session_id
}

/// Parse the one JSON line a CLI command printed.
pub fn json_line(out: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "command failed ({}): {}{}",
        out.status,
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().count(),
        1,
        "--json prints one line: {stdout}"
    );
    serde_json::from_str(stdout.trim()).expect("JSON output")
}

/// Status code of `GET path` on `base_url` (plain HTTP/1.1 over a TCP socket: the harness is
/// synchronous and runs inside async tests, so it cannot block on an async client).
pub fn http_status(base_url: &str, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let addr = base_url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}
