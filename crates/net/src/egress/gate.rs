//! The name gate for ports 80 and 443 of a closed policy: the firewall redirects the VM's new
//! connections to those ports to this listener (on the host end of its veth); the gate reads
//! the original destination (`SO_ORIGINAL_DST`), reads the first bytes until it has the TLS
//! ClientHello's SNI or the HTTP request's `Host`, and relays the connection to the original
//! destination only when that name is allowed **and** the destination is an address the VM's
//! resolver pinned for that very name (or an allowed CIDR). Anything else is refused.

use super::policy::canonical_name;
use super::VmState;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Most bytes read before a name must be known (a ClientHello is far smaller).
const MAX_SNIFF: usize = 16 << 10;
const SNIFF_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the first bytes of a connection say.
#[derive(Debug, PartialEq, Eq)]
pub enum Sniff {
    NeedMore,
    /// TLS with this SNI, or HTTP with this Host (lowercase, no port, no final dot).
    Name(String),
    /// TLS without SNI, HTTP without (or with several) Host headers, or neither protocol.
    NoName,
}

/// Look at the start of a connection.
pub fn sniff(buf: &[u8]) -> Sniff {
    match buf.first() {
        None => Sniff::NeedMore,
        Some(0x16) => sniff_tls(buf),
        Some(_) => sniff_http(buf),
    }
}

fn sniff_tls(buf: &[u8]) -> Sniff {
    // Record header: type 22, version, length; the ClientHello must fit in the first record.
    if buf.len() < 5 {
        return Sniff::NeedMore;
    }
    let rec_len = u16::from_be_bytes([buf[3], buf[4]]) as usize;
    if buf.len() < 5 + rec_len {
        return if 5 + rec_len > MAX_SNIFF {
            Sniff::NoName
        } else {
            Sniff::NeedMore
        };
    }
    client_hello_sni(&buf[5..5 + rec_len]).map_or(Sniff::NoName, Sniff::Name)
}

fn client_hello_sni(h: &[u8]) -> Option<String> {
    let mut r = Reader(h, 0);
    if r.u8()? != 1 {
        return None; // not a ClientHello
    }
    let len = r.u24()?;
    let mut r = Reader(r.take(len)?, 0);
    r.take(2 + 32)?; // version, random
    let sid = r.u8()? as usize;
    r.take(sid)?;
    let suites = r.u16()? as usize;
    r.take(suites)?;
    let comp = r.u8()? as usize;
    r.take(comp)?;
    let ext_len = r.u16()? as usize;
    let mut ext = Reader(r.take(ext_len)?, 0);
    let mut found = None;
    while ext.1 < ext.0.len() {
        let typ = ext.u16()?;
        let len = ext.u16()? as usize;
        let data = ext.take(len)?;
        if typ == 0 {
            if found.is_some() {
                return None; // two server_name extensions
            }
            let mut s = Reader(data, 0);
            let list = s.u16()? as usize;
            let mut s = Reader(s.take(list)?, 0);
            while s.1 < s.0.len() {
                let kind = s.u8()?;
                let n = s.u16()? as usize;
                let name = s.take(n)?;
                if kind == 0 {
                    if found.is_some() {
                        return None; // two host names
                    }
                    let name = std::str::from_utf8(name).ok()?;
                    found = Some(canonical_name(name));
                }
            }
        }
    }
    found
}

struct Reader<'a>(&'a [u8], usize);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.0.get(self.1..self.1.checked_add(n)?)?;
        self.1 += n;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u24(&mut self) -> Option<usize> {
        let b = self.take(3)?;
        Some((b[0] as usize) << 16 | (b[1] as usize) << 8 | b[2] as usize)
    }
}

fn sniff_http(buf: &[u8]) -> Sniff {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() >= MAX_SNIFF {
            Sniff::NoName
        } else {
            Sniff::NeedMore
        };
    };
    let Ok(head) = std::str::from_utf8(&buf[..end]) else {
        return Sniff::NoName;
    };
    let mut lines = head.split("\r\n");
    let request = lines.next().unwrap_or_default();
    if request.split(' ').count() != 3
        || !request.ends_with("HTTP/1.1") && !request.ends_with("HTTP/1.0")
    {
        return Sniff::NoName;
    }
    let mut host = None;
    for line in lines {
        let Some((k, v)) = line.split_once(':') else {
            return Sniff::NoName;
        };
        if k.eq_ignore_ascii_case("host") {
            if host.is_some() {
                return Sniff::NoName;
            }
            host = Some(v.trim().to_owned());
        }
    }
    let Some(host) = host else {
        return Sniff::NoName;
    };
    // Strip a port (`name:8080`); bracketed IPv6 literals are never allowed names anyway.
    let name = match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host.as_str(),
    };
    Sniff::Name(canonical_name(name))
}

/// The destination a connection had before the firewall redirected it.
pub fn original_dst(s: &TcpStream) -> io::Result<SocketAddrV4> {
    let mut addr: libc::sockaddr_in = unsafe_zeroed();
    let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: a valid socket fd; `addr` and `len` are valid for writes of a sockaddr_in.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_IP,
            libc::SO_ORIGINAL_DST,
            (&mut addr as *mut libc::sockaddr_in).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(SocketAddrV4::new(
        Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr)),
        u16::from_be(addr.sin_port),
    ))
}

fn unsafe_zeroed() -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain old data; all zeroes is a valid value.
    unsafe { std::mem::zeroed() }
}

/// Accept the VM's redirected connections for as long as the task lives.
pub async fn serve(vm: Arc<VmState>, listener: TcpListener) {
    loop {
        let Ok((s, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        if peer.ip() != std::net::IpAddr::V4(vm.sandbox_ip) {
            continue;
        }
        let vm = vm.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(&vm, s).await {
                tracing::debug!(vm = %vm.id, "gate: {e}");
            }
        });
    }
}

async fn handle(vm: &VmState, mut s: TcpStream) -> io::Result<()> {
    let _ = s.set_nodelay(true);
    let dst = original_dst(&s)?;
    let mut buf = Vec::with_capacity(2048);
    let sniffed = tokio::time::timeout(SNIFF_TIMEOUT, async {
        let mut chunk = [0u8; 4096];
        loop {
            match sniff(&buf) {
                Sniff::NeedMore => {}
                other => return io::Result::Ok(other),
            }
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                return Ok(Sniff::NoName);
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .unwrap_or(Ok(Sniff::NoName))?;
    let rules = vm.rules();
    let ip = *dst.ip();
    let name = match &sniffed {
        Sniff::Name(n) => Some(n.as_str()),
        _ => None,
    };
    let verdict = if vm.cfg.private.is_private(ip) || super::is_host_address(ip) {
        Err("a private or host address")
    } else if rules.open
        || rules.cidr_allowed(ip)
        || (dst.port() == 80 && rules.policy.allow_http)
        || (dst.port() == 443 && rules.policy.allow_https)
    {
        // Open to every address (the policy may have changed since the redirect).
        Ok(())
    } else {
        match name {
            None => Err("no TLS SNI or HTTP Host"),
            Some(n) if !rules.name_allowed(n) => Err("name not allowed"),
            Some(n) if !vm.pinned(ip, n) => Err("address not resolved for that name"),
            Some(_) => Ok(()),
        }
    };
    if let Err(why) = verdict {
        vm.deny(format_args!(
            "connection to {dst} as {:?}: {why}",
            name.unwrap_or("-")
        ));
        if buf.first().is_some_and(|b| *b != 0x16) {
            let body = "blocked by the VM's egress policy\n";
            let _ = s
                .write_all(
                    format!(
                        "HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                )
                .await;
        }
        return Ok(());
    }
    // A host bound to the VM's vaults, named by the SNI and reached at an address the VM's
    // resolver pinned for that very name: the vault proxy takes the connection.
    if let (Some(n), Some(proxy), 443, Some(0x16)) = (
        name,
        crate::vault::installed(),
        dst.port(),
        buf.first().copied(),
    ) {
        if vm.pinned(ip, n) && proxy.intercepts(&vm.id, n).await {
            let client = crate::vault::Prefixed::new(buf, s);
            return proxy
                .serve(client, n.to_owned(), dst.into(), vm.id.clone())
                .await;
        }
    }
    let mut up = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(dst))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect"))??;
    let _ = up.set_nodelay(true);
    up.write_all(&buf).await?;
    tokio::io::copy_bidirectional(&mut s, &mut up).await?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal TLS 1.2/1.3 ClientHello with this SNI.
    pub fn client_hello(sni: Option<&str>) -> Vec<u8> {
        let mut ext = Vec::new();
        if let Some(name) = sni {
            let n = name.as_bytes();
            let mut list = vec![0u8];
            list.extend_from_slice(&(n.len() as u16).to_be_bytes());
            list.extend_from_slice(n);
            ext.extend_from_slice(&[0, 0]);
            ext.extend_from_slice(&((list.len() + 2) as u16).to_be_bytes());
            ext.extend_from_slice(&(list.len() as u16).to_be_bytes());
            ext.extend_from_slice(&list);
        }
        // supported_versions, to look real
        ext.extend_from_slice(&[0, 43, 0, 3, 2, 3, 4]);
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7u8; 32]);
        body.push(0); // session id
        body.extend_from_slice(&[0, 2, 0x13, 0x01]);
        body.extend_from_slice(&[1, 0]);
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);
        let mut hs = vec![1];
        hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(&body);
        let mut rec = vec![0x16, 3, 1];
        rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        rec.extend_from_slice(&hs);
        rec
    }

    #[test]
    fn tls_sni() {
        let h = client_hello(Some("Pypi.ORG"));
        assert_eq!(sniff(&h), Sniff::Name("pypi.org".into()));
        assert_eq!(sniff(&h[..h.len() - 1]), Sniff::NeedMore);
        assert_eq!(sniff(&h[..3]), Sniff::NeedMore);
        assert_eq!(sniff(&client_hello(None)), Sniff::NoName);
    }

    #[test]
    fn http_host() {
        assert_eq!(
            sniff(b"GET / HTTP/1.1\r\nHost: Example.com:8080\r\nAccept: */*\r\n\r\n"),
            Sniff::Name("example.com".into())
        );
        assert_eq!(sniff(b"GET / HTTP/1.1\r\nHost: a"), Sniff::NeedMore);
        assert_eq!(
            sniff(b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n"),
            Sniff::NoName
        );
        assert_eq!(
            sniff(b"GET / HTTP/1.1\r\nHost: a.com\r\nhost: b.com\r\n\r\n"),
            Sniff::NoName,
            "two Host headers"
        );
        assert_eq!(sniff(b"SSH-2.0-OpenSSH\r\n\r\n"), Sniff::NoName);
    }
}
