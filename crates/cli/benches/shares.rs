//! Share proxy benchmark (not a test): starts `instavm server` like the end-to-end tests do,
//! runs a small keep-alive HTTP server inside a VM (Python, answering with `sendfile`), and
//! measures on loopback
//! - a small GET through a public share vs. the same GET sent straight to the VM's address
//!   (one keep-alive connection each, so it is the proxy's per-request cost);
//! - the same with a new connection per request (Connection: close);
//! - a 256 MiB download through the share and direct.
//!
//! Prints p50/p99 and writes JSON to `--out PATH`, `INSTAVM_BENCH_OUT`, or
//! `<target>/instavm-bench/shares.json`. Targets: <= 0.3 ms extra p50 for a small GET,
//! >= 500 MB/s for the download.
//!
//! Run: `cargo bench -p instavm-cli --bench shares` (as root, real runtime).

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use instavm_sdk::{CreateShareRequest, ExecuteRequest};
use serde_json::json;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const WARMUP: usize = 200;
const REQUESTS: usize = 3000;
const FRESH_CONNECTIONS: usize = 500;
const BIG_MIB: u64 = 256;
const DOWNLOADS: usize = 5;
const PORT: u16 = 8000;

/// The app: `/small` answers 13 bytes, `/big` the 256 MiB file with sendfile; keep-alive.
const APP: &str = r#"
import os, socket, threading
big = os.open("/tmp/big", os.O_RDONLY)
size = os.fstat(big).st_size
def serve(c):
    f = c.makefile("rb")
    while True:
        line = f.readline()
        if not line:
            return
        path = line.split()[1]
        close = False
        while True:
            h = f.readline()
            if h in (b"\r\n", b""):
                break
            if h.lower().startswith(b"connection:") and b"close" in h.lower():
                close = True
        if path == b"/big":
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
            c.sendfile(os.fdopen(os.dup(big), "rb"), 0, size)
        else:
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nhello, world\n")
        if close:
            c.close()
            return
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8000))
s.listen(128)
while True:
    conn, _ = s.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"#;

/// One GET on `stream`; returns the body length.
fn get(stream: &mut BufReader<TcpStream>, host: &str, path: &str, close: bool) -> u64 {
    let conn = if close { "Connection: close\r\n" } else { "" };
    write!(
        stream.get_mut(),
        "GET {path} HTTP/1.1\r\nHost: {host}\r\n{conn}\r\n"
    )
    .expect("send");
    let mut length = 0u64;
    let mut line = String::new();
    stream.read_line(&mut line).expect("status");
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    loop {
        line.clear();
        stream.read_line(&mut line).expect("header");
        if line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().expect("length");
        }
    }
    let copied =
        std::io::copy(&mut stream.by_ref().take(length), &mut std::io::sink()).expect("body");
    assert_eq!(copied, length);
    length
}

fn connect(addr: &str) -> BufReader<TcpStream> {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    BufReader::with_capacity(1 << 20, s)
}

/// Small GETs on one keep-alive connection.
fn keep_alive(addr: &str) -> Vec<Duration> {
    let mut s = connect(addr);
    let mut samples = Vec::with_capacity(REQUESTS);
    for i in 0..WARMUP + REQUESTS {
        let t = Instant::now();
        get(&mut s, addr, "/small", false);
        if i >= WARMUP {
            samples.push(t.elapsed());
        }
    }
    samples
}

/// Small GETs, each on a new connection.
fn fresh(addr: &str) -> Vec<Duration> {
    (0..FRESH_CONNECTIONS)
        .map(|_| {
            let t = Instant::now();
            let mut s = connect(addr);
            get(&mut s, addr, "/small", true);
            t.elapsed()
        })
        .collect()
}

/// MB/s (10^6 bytes) of `/big`, best and median of a few downloads.
fn download(addr: &str) -> serde_json::Value {
    let mut rates: Vec<f64> = (0..DOWNLOADS)
        .map(|_| {
            let mut s = connect(addr);
            let t = Instant::now();
            let n = get(&mut s, addr, "/big", true);
            assert_eq!(n, BIG_MIB << 20);
            n as f64 / t.elapsed().as_secs_f64() / 1e6
        })
        .collect();
    rates.sort_by(|a, b| a.total_cmp(b));
    json!({"median_mb_s": rates[rates.len() / 2], "best_mb_s": rates[rates.len() - 1], "downloads": DOWNLOADS})
}

fn p50(v: &serde_json::Value) -> f64 {
    v["p50_ms"].as_f64().unwrap_or_default()
}

fn main() {
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let server = common::TestServer::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (direct, shared) = rt.block_on(async {
        let (client, _) = server.user("share-bench@example.com").await;
        let sid = common::session(&client).await;
        let bash = |command: String| ExecuteRequest {
            command,
            session_id: sid.clone(),
            language: Some("bash".into()),
            timeout: Some(120),
        };
        let setup = format!(
            "head -c {} /dev/zero > /tmp/big && cat > /tmp/app.py <<'EOF'\n{APP}\nEOF\n\
             (setsid python3 /tmp/app.py </dev/null >/tmp/app.log 2>&1 &)\n\
             for i in $(seq 100); do python3 -c \"import socket; socket.create_connection(('127.0.0.1', {PORT}))\" 2>/dev/null && break; sleep 0.05; done\n\
             hostname -I",
            BIG_MIB << 20
        );
        let out = client.execute(&bash(setup)).await.expect("start the app");
        assert_eq!(out.exit_code, 0, "{}", out.stderr);
        let ip = out.stdout.split_whitespace().next().expect("VM address").to_owned();
        let share = client
            .create_share(&CreateShareRequest {
                port: Some(PORT.into()),
                is_public: Some(true),
                session_id: Some(sid.clone()),
                vm_id: None,
            })
            .await
            .expect("share");
        let shared = share
            .url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        (format!("{ip}:{PORT}"), shared)
    });
    println!("shares: direct {direct}, through the share proxy {shared}");

    let direct_keep = support::stats(keep_alive(&direct));
    let shared_keep = support::stats(keep_alive(&shared));
    let direct_fresh = support::stats(fresh(&direct));
    let shared_fresh = support::stats(fresh(&shared));
    let direct_big = download(&direct);
    let shared_big = download(&shared);

    let extra_keep = p50(&shared_keep) - p50(&direct_keep);
    let extra_fresh = p50(&shared_fresh) - p50(&direct_fresh);
    println!(
        "small GET, keep-alive:      direct p50 {:.3} ms p99 {:.3} ms | share p50 {:.3} ms p99 {:.3} ms | extra p50 {:.3} ms (target <= 0.3)",
        p50(&direct_keep), direct_keep["p99_ms"], p50(&shared_keep), shared_keep["p99_ms"], extra_keep
    );
    println!(
        "small GET, new connection:  direct p50 {:.3} ms p99 {:.3} ms | share p50 {:.3} ms p99 {:.3} ms | extra p50 {:.3} ms",
        p50(&direct_fresh), direct_fresh["p99_ms"], p50(&shared_fresh), shared_fresh["p99_ms"], extra_fresh
    );
    println!(
        "{BIG_MIB} MiB download:          direct {:.0} MB/s | share {:.0} MB/s median, {:.0} best (target >= 500)",
        direct_big["median_mb_s"].as_f64().unwrap_or_default(),
        shared_big["median_mb_s"].as_f64().unwrap_or_default(),
        shared_big["best_mb_s"].as_f64().unwrap_or_default(),
    );
    let report = json!({
        "small_get_keep_alive": {"direct": direct_keep, "share": shared_keep, "extra_p50_ms": extra_keep, "target_extra_p50_ms": 0.3},
        "small_get_new_connection": {"direct": direct_fresh, "share": shared_fresh, "extra_p50_ms": extra_fresh},
        "download_256_mib": {"direct": direct_big, "share": shared_big, "target_mb_s": 500},
    });
    support::write_report("shares", &report);
}
