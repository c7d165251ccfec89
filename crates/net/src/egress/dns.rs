//! The per-VM resolver: a DNS server on the host end of the VM's veth (UDP and TCP port 53)
//! that forwards allowed questions to the upstream resolvers, answers NXDOMAIN for names the
//! policy does not allow, and pins the IPv4 addresses of allowed answers into the VM's nftables
//! set before the answer reaches the VM. Only what the resolver needs of DNS is parsed here:
//! the header, the one question, and the A records of an answer (with name compression).

use super::policy::canonical_name;
use super::VmState;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

pub const TYPE_A: u16 = 1;
pub const TYPE_AAAA: u16 = 28;
pub const TYPE_SVCB: u16 = 64;
pub const TYPE_HTTPS: u16 = 65;
pub const TYPE_ANY: u16 = 255;
pub const RCODE_NOERROR: u8 = 0;
pub const RCODE_FORMERR: u8 = 1;
pub const RCODE_SERVFAIL: u8 = 2;
pub const RCODE_NXDOMAIN: u8 = 3;
pub const RCODE_REFUSED: u8 = 5;

/// How long one upstream may take to answer.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(3);
/// A TCP client that sends nothing for this long is dropped.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// The question of a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    pub id: u16,
    /// Lowercase, without the final dot.
    pub name: String,
    pub qtype: u16,
    /// Offset just past the question (where the answer section starts).
    pub end: usize,
}

/// Read a name at `pos`; returns it (dotted, as sent) and the offset after it in the message
/// (after the first pointer when compressed). Loops and overlong names are errors.
pub fn read_name(msg: &[u8], mut pos: usize) -> Option<(String, usize)> {
    let mut name = String::new();
    let mut end = None;
    let mut jumps = 0;
    loop {
        let len = *msg.get(pos)? as usize;
        match len & 0xc0 {
            0x00 => {
                if len == 0 {
                    return Some((name, end.unwrap_or(pos + 1)));
                }
                let label = msg.get(pos + 1..pos + 1 + len)?;
                if !name.is_empty() {
                    name.push('.');
                }
                // Labels with dots or odd bytes never match an allowlist entry anyway; keep
                // them visible but unambiguous.
                for &b in label {
                    if b.is_ascii_graphic() && b != b'.' {
                        name.push(b as char);
                    } else {
                        name.push_str(&format!("\\{b:03}"));
                    }
                }
                if name.len() > 255 {
                    return None;
                }
                pos += 1 + len;
            }
            0xc0 => {
                let target = ((len & 0x3f) << 8) | *msg.get(pos + 1)? as usize;
                end.get_or_insert(pos + 2);
                jumps += 1;
                if jumps > 32 || target >= pos {
                    return None;
                }
                pos = target;
            }
            _ => return None,
        }
    }
}

fn u16_at(msg: &[u8], pos: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*msg.get(pos)?, *msg.get(pos + 1)?]))
}

fn u32_at(msg: &[u8], pos: usize) -> Option<u32> {
    Some(u32::from_be_bytes(msg.get(pos..pos + 4)?.try_into().ok()?))
}

/// A standard query with exactly one question; `None` for anything else.
pub fn parse_query(msg: &[u8]) -> Option<Question> {
    if msg.len() < 12 {
        return None;
    }
    let flags = u16_at(msg, 2)?;
    let qr = flags & 0x8000 != 0;
    let opcode = (flags >> 11) & 0xf;
    if qr || opcode != 0 || u16_at(msg, 4)? != 1 || u16_at(msg, 6)? != 0 {
        return None;
    }
    let (name, pos) = read_name(msg, 12)?;
    let qtype = u16_at(msg, pos)?;
    let _class = u16_at(msg, pos + 2)?;
    Some(Question {
        id: u16_at(msg, 0)?,
        name: canonical_name(&name),
        qtype,
        end: pos + 4,
    })
}

/// An answer made here: the query's header and question, no records, this rcode.
pub fn reply(query: &[u8], q: &Question, rcode: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(q.end);
    out.extend_from_slice(&query[..2]);
    // QR, the query's opcode and RD, RA; the rcode.
    let rd = query[2] & 0x01;
    out.push(0x80 | rd);
    out.push(0x80 | (rcode & 0x0f));
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&query[12..q.end]);
    out
}

/// A minimal error answer to a message that is not a query we understand (FORMERR), when at
/// least its id is there.
pub fn format_error(query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    let mut out = query[..12].to_vec();
    out[2] = 0x80;
    out[3] = 0x80 | RCODE_FORMERR;
    out[4..12].fill(0);
    Some(out)
}

/// An upstream answer to `q`: its rcode and the A records of its answer section (address,
/// TTL), whatever their owner name (CNAME chains end in the records of the last name).
/// `None` when the message is not an answer to this question.
pub fn parse_answer(msg: &[u8], q: &Question) -> Option<(u8, Vec<(Ipv4Addr, u32)>)> {
    if msg.len() < 12 || u16_at(msg, 0)? != q.id {
        return None;
    }
    let flags = u16_at(msg, 2)?;
    if flags & 0x8000 == 0 || u16_at(msg, 4)? != 1 {
        return None;
    }
    let rcode = (flags & 0x0f) as u8;
    let ancount = u16_at(msg, 6)?;
    let (name, mut pos) = read_name(msg, 12)?;
    if canonical_name(&name) != q.name || u16_at(msg, pos)? != q.qtype {
        return None;
    }
    pos += 4;
    let mut addrs = Vec::new();
    for _ in 0..ancount {
        let (_, p) = read_name(msg, pos)?;
        let rtype = u16_at(msg, p)?;
        let class = u16_at(msg, p + 2)?;
        let ttl = u32_at(msg, p + 4)?;
        let rdlen = u16_at(msg, p + 8)? as usize;
        let rdata = msg.get(p + 10..p + 10 + rdlen)?;
        if rtype == TYPE_A && class == 1 && rdlen == 4 {
            addrs.push((Ipv4Addr::new(rdata[0], rdata[1], rdata[2], rdata[3]), ttl));
        }
        pos = p + 10 + rdlen;
    }
    Some((rcode, addrs))
}

/// Whether an answer came back truncated (TC): retry over TCP.
fn truncated(msg: &[u8]) -> bool {
    msg.len() > 2 && msg[2] & 0x02 != 0
}

/// Ask the upstreams in turn; the first answer to this question wins.
async fn forward(vm: &VmState, query: &[u8], q: &Question) -> Option<Vec<u8>> {
    for up in vm.cfg.upstreams.iter() {
        match forward_udp(*up, query, q).await {
            Ok(a) if truncated(&a) => {
                if let Ok(a) = forward_tcp(*up, query, q).await {
                    return Some(a);
                }
            }
            Ok(a) => return Some(a),
            Err(e) => tracing::debug!(vm = %vm.id, upstream = %up, "DNS upstream: {e}"),
        }
    }
    None
}

async fn forward_udp(up: SocketAddr, query: &[u8], q: &Question) -> io::Result<Vec<u8>> {
    let bind: SocketAddr = if up.is_ipv4() {
        "0.0.0.0:0".parse().unwrap()
    } else {
        "[::]:0".parse().unwrap()
    };
    let sock = UdpSocket::bind(bind).await?;
    sock.connect(up).await?;
    sock.send(query).await?;
    let mut buf = vec![0u8; 4096];
    tokio::time::timeout(UPSTREAM_TIMEOUT, async {
        loop {
            let n = sock.recv(&mut buf).await?;
            // Anything that is not the answer to this question (a spoof, a late answer) is
            // ignored.
            if parse_answer(&buf[..n], q).is_some() {
                return Ok(buf[..n].to_vec());
            }
        }
    })
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer"))?
}

async fn forward_tcp(up: SocketAddr, query: &[u8], q: &Question) -> io::Result<Vec<u8>> {
    tokio::time::timeout(UPSTREAM_TIMEOUT, async {
        let mut s = TcpStream::connect(up).await?;
        s.write_all(&(query.len() as u16).to_be_bytes()).await?;
        s.write_all(query).await?;
        let len = s.read_u16().await? as usize;
        let mut buf = vec![0u8; len];
        s.read_exact(&mut buf).await?;
        if parse_answer(&buf, q).is_none() {
            return Err(io::Error::other("not an answer to the question"));
        }
        Ok(buf)
    })
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer"))?
}

/// Answer one message from the VM (`None`: drop it).
pub async fn answer(vm: &VmState, query: &[u8]) -> Option<Vec<u8>> {
    let Some(q) = parse_query(query) else {
        return format_error(query);
    };
    let rules = vm.rules();
    if rules.open {
        let Some(resp) = forward(vm, query, &q).await else {
            return Some(reply(query, &q, RCODE_SERVFAIL));
        };
        // A host of the VM's vaults: its addresses are pinned, so HTTPS to them reaches the
        // vault proxy through the gate (and only when the SNI names that host).
        if q.qtype == TYPE_A {
            if let Some(proxy) = crate::vault::installed() {
                if proxy.intercepts(&vm.id, &q.name).await {
                    pin_public(vm, &resp, &q).await;
                }
            }
        }
        return Some(resp);
    }
    let allowed = rules.name_allowed(&q.name);
    if !allowed && !rules.resolves_every_name() {
        vm.deny(format_args!(
            "DNS name {} (type {}) is not allowed",
            q.name, q.qtype
        ));
        return Some(reply(query, &q, RCODE_NXDOMAIN));
    }
    // No IPv6 egress, and no address hints that would bypass the pinning.
    if matches!(q.qtype, TYPE_AAAA | TYPE_SVCB | TYPE_HTTPS) {
        return Some(reply(query, &q, RCODE_NOERROR));
    }
    if q.qtype == TYPE_ANY {
        return Some(reply(query, &q, RCODE_REFUSED));
    }
    let Some(resp) = forward(vm, query, &q).await else {
        return Some(reply(query, &q, RCODE_SERVFAIL));
    };
    if !allowed {
        return Some(resp);
    }
    let (_, addrs) = parse_answer(&resp, &q)?;
    // Addresses in private ranges are never pinned: an allowed name cannot open the host's
    // network (DNS rebinding); the firewall drops them anyway.
    let addrs: Vec<(Ipv4Addr, u32)> = addrs
        .into_iter()
        .filter(|(ip, _)| !vm.cfg.private.is_private(*ip) && !super::is_host_address(*ip))
        .collect();
    if !addrs.is_empty() {
        if let Err(e) = vm.pin(&q.name, &addrs).await {
            tracing::warn!(vm = %vm.id, "pinning addresses of {}: {e}", q.name);
            return Some(reply(query, &q, RCODE_SERVFAIL));
        }
    }
    Some(resp)
}

/// Pin the public addresses of an answer (best effort: a failure leaves the name un-pinned,
/// so its traffic is simply not intercepted).
async fn pin_public(vm: &VmState, resp: &[u8], q: &Question) {
    let Some((_, addrs)) = parse_answer(resp, q) else {
        return;
    };
    let addrs: Vec<(Ipv4Addr, u32)> = addrs
        .into_iter()
        .filter(|(ip, _)| !vm.cfg.private.is_private(*ip) && !super::is_host_address(*ip))
        .collect();
    if !addrs.is_empty() {
        if let Err(e) = vm.pin(&q.name, &addrs).await {
            tracing::warn!(vm = %vm.id, "pinning vault host {}: {e}", q.name);
        }
    }
}

/// Serve DNS over UDP on the VM's socket, for as long as the task lives.
pub async fn serve_udp(vm: Arc<VmState>, sock: UdpSocket) {
    let sock = Arc::new(sock);
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, peer) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(vm = %vm.id, "DNS socket: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if peer.ip() != std::net::IpAddr::V4(vm.sandbox_ip) || !vm.take_query_token() {
            continue;
        }
        let Ok(permit) = vm.inflight.clone().try_acquire_owned() else {
            continue; // flooded: drop, the client retries
        };
        let query = buf[..n].to_vec();
        let (vm, sock) = (vm.clone(), sock.clone());
        tokio::spawn(async move {
            if let Some(a) = answer(&vm, &query).await {
                let _ = sock.send_to(&a, peer).await;
            }
            drop(permit);
        });
    }
}

/// Serve DNS over TCP (length-prefixed messages, several per connection).
pub async fn serve_tcp(vm: Arc<VmState>, listener: TcpListener) {
    loop {
        let Ok((mut s, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        if peer.ip() != std::net::IpAddr::V4(vm.sandbox_ip) {
            continue;
        }
        let Ok(permit) = vm.inflight.clone().try_acquire_owned() else {
            continue;
        };
        let vm = vm.clone();
        tokio::spawn(async move {
            loop {
                let msg = tokio::time::timeout(TCP_IDLE, async {
                    let len = s.read_u16().await? as usize;
                    let mut buf = vec![0u8; len];
                    s.read_exact(&mut buf).await?;
                    io::Result::Ok(buf)
                })
                .await;
                let Ok(Ok(query)) = msg else { break };
                if !vm.take_query_token() {
                    break;
                }
                let Some(a) = answer(&vm, &query).await else {
                    break;
                };
                if s.write_all(&(a.len() as u16).to_be_bytes()).await.is_err()
                    || s.write_all(&a).await.is_err()
                {
                    break;
                }
            }
            drop(permit);
        });
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A query for `name` of `qtype`.
    pub fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
        let mut m = id.to_be_bytes().to_vec();
        m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        for l in name.split('.') {
            m.push(l.len() as u8);
            m.extend_from_slice(l.as_bytes());
        }
        m.extend_from_slice(&[0, (qtype >> 8) as u8, qtype as u8, 0, 1]);
        m
    }

    /// An answer to `q` with a CNAME to a compressed name and A records.
    pub fn answer_with(q: &[u8], addrs: &[([u8; 4], u32)]) -> Vec<u8> {
        let mut m = q.to_vec();
        m[2] = 0x81;
        m[3] = 0x80;
        m[7] = (1 + addrs.len()) as u8;
        // CNAME: owner = the question (pointer to 12), target "cdn" + pointer to 12.
        m.extend_from_slice(&[
            0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 6, 3, b'c', b'd', b'n', 0xc0, 12,
        ]);
        let cname_at = m.len() - 6;
        for (ip, ttl) in addrs {
            m.extend_from_slice(&[0xc0, cname_at as u8, 0, 1, 0, 1]);
            m.extend_from_slice(&ttl.to_be_bytes());
            m.extend_from_slice(&[0, 4]);
            m.extend_from_slice(ip);
        }
        m
    }

    #[test]
    fn queries_parse() {
        let m = query(7, "WWW.Example.com", TYPE_A);
        let q = parse_query(&m).unwrap();
        assert_eq!(
            (q.id, q.name.as_str(), q.qtype, q.end),
            (7, "www.example.com", 1, m.len())
        );
        let r = reply(&m, &q, RCODE_NXDOMAIN);
        assert_eq!(r[3] & 0x0f, RCODE_NXDOMAIN);
        assert_eq!(&r[12..], &m[12..]);
        assert!(parse_query(&m[..10]).is_none());
        let mut answer = m.clone();
        answer[2] |= 0x80;
        assert!(parse_query(&answer).is_none(), "answers are not queries");
    }

    #[test]
    fn answers_parse_through_cname_and_compression() {
        let m = query(9, "a.example.com", TYPE_A);
        let q = parse_query(&m).unwrap();
        let a = answer_with(&m, &[([198, 18, 0, 1], 30), ([8, 8, 8, 8], 0)]);
        let (rcode, addrs) = parse_answer(&a, &q).unwrap();
        assert_eq!(rcode, 0);
        assert_eq!(
            addrs,
            vec![
                (Ipv4Addr::new(198, 18, 0, 1), 30),
                (Ipv4Addr::new(8, 8, 8, 8), 0)
            ]
        );
        // Another id, another question, a truncated record: not an answer.
        let mut other = a.clone();
        other[1] = 10;
        assert!(parse_answer(&other, &q).is_none());
        let q2 = parse_query(&query(9, "b.example.com", TYPE_A)).unwrap();
        assert!(parse_answer(&a, &q2).is_none());
        assert!(parse_answer(&a[..a.len() - 2], &q).is_none());
    }

    #[test]
    fn pointer_loops_are_refused() {
        let mut m = query(1, "x", TYPE_A);
        m.truncate(12);
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        assert!(read_name(&m, 12).is_none());
    }
}
