//! "The internet" for egress tests and benchmarks: a network namespace with addresses on
//! 198.19.N.0/24 (RFC 2544, routed through the host and its NAT like the real internet), a DNS
//! server answering A records for `*.test` names, and HTTP sites on port 80 and 8080. Needs
//! root, `ip` and python3 on the host.

#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The DNS server: `a.test` and every name under it → .10, `b.test` and under → .11, other
/// `.test` names NXDOMAIN; TTL 60.
const DNS_SERVER: &str = r#"
import socket, struct, sys
net = sys.argv[1]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((net + ".1", 53))
while True:
    q, peer = s.recvfrom(4096)
    try:
        i, labels = 12, []
        while q[i]:
            labels.append(q[i + 1:i + 1 + q[i]].decode()); i += 1 + q[i]
        name = ".".join(labels).lower()
        qtype = struct.unpack(">H", q[i + 1:i + 3])[0]
        ip = None
        if name == "a.test" or name.endswith(".a.test"): ip = net + ".10"
        if name == "b.test" or name.endswith(".b.test"): ip = net + ".11"
        ans = b""
        if ip and qtype == 1:
            ans = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + socket.inet_aton(ip)
        flags = 0x8180 if ip else 0x8183
        s.sendto(q[:2] + struct.pack(">HHHHH", flags, 1, 1 if ans else 0, 0, 0) + q[12:i + 5] + ans, peer)
    except Exception as e:
        print("dns error", e, file=sys.stderr)
"#;

const SITES: &str = r#"
import http.server, sys, threading, time
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    def do_GET(s):
        ip, port = s.server.server_address[:2]
        body = f"site {ip}:{port}\n".encode()
        s.send_response(200); s.send_header("Content-Length", str(len(body))); s.end_headers(); s.wfile.write(body)
    def log_message(s, *a): pass
for spec in sys.argv[1:]:
    ip, port = spec.split(":")
    srv = http.server.ThreadingHTTPServer((ip, int(port)), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
print("ready", flush=True)
while True:
    time.sleep(3600)
"#;

pub struct Internet {
    pub ns: String,
    /// `198.19.N`
    pub net: String,
    host_if: String,
    procs: Vec<Child>,
}

fn sh(cmd: &str) {
    let st = Command::new("sh").arg("-c").arg(cmd).status().unwrap();
    assert!(st.success(), "{cmd}");
}

impl Internet {
    pub fn new() -> Internet {
        let n = 20 + std::process::id() % 200;
        let ns = format!("ivmnet{n}");
        let (host_if, peer_if) = (format!("ivn{n}h"), format!("ivn{n}p"));
        let net = format!("198.19.{n}");
        let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        let _ = Command::new("ip")
            .args(["link", "del", &host_if])
            .stderr(Stdio::null())
            .status();
        sh(&format!("ip netns add {ns}"));
        sh(&format!(
            "ip link add {host_if} type veth peer name {peer_if} netns {ns}"
        ));
        sh(&format!(
            "ip addr add {net}.2/24 dev {host_if} && ip link set {host_if} up"
        ));
        for last in [1, 10, 11] {
            sh(&format!(
                "ip -n {ns} addr add {net}.{last}/24 dev {peer_if}"
            ));
        }
        sh(&format!(
            "ip -n {ns} link set {peer_if} up && ip -n {ns} link set lo up && ip -n {ns} route add default via {net}.2"
        ));
        let dns = Command::new("ip")
            .args(["netns", "exec", &ns, "python3", "-c", DNS_SERVER, &net])
            .spawn()
            .unwrap();
        let mut sites = Command::new("ip")
            .args(["netns", "exec", &ns, "python3", "-c", SITES])
            .args([
                format!("{net}.10:80"),
                format!("{net}.10:8080"),
                format!("{net}.11:80"),
                format!("{net}.11:8080"),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        use std::io::BufRead;
        std::io::BufReader::new(sites.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready");
        std::thread::sleep(Duration::from_millis(100));
        Internet {
            ns,
            net,
            host_if,
            procs: vec![dns, sites],
        }
    }

    pub fn dns(&self) -> String {
        format!("{}.1:53", self.net)
    }

    pub fn site_a(&self) -> String {
        format!("{}.10", self.net)
    }

    pub fn site_b(&self) -> String {
        format!("{}.11", self.net)
    }
}

impl Drop for Internet {
    fn drop(&mut self) {
        for p in &mut self.procs {
            let _ = p.kill();
            let _ = p.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .stderr(Stdio::null())
            .status();
    }
}
