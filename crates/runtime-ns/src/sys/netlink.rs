//! A minimal rtnetlink client: just the link, address and route operations the sandbox network
//! needs (a veth pair across two namespaces, addresses, a default route). Messages are built by
//! hand; every request asks for an acknowledgement and its error is returned.

use super::check;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_REPLACE: u16 = 0x100;

const IFLA_IFNAME: u16 = 3;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_ADDRESS: u16 = 1;
const RTA_GATEWAY: u16 = 5;
const NLA_F_NESTED: u16 = 0x8000;

const IFF_UP: u32 = 0x1;
const IFINFOMSG_LEN: usize = 16;

/// A NETLINK_ROUTE socket. It acts on the network namespace it was created in, whatever the
/// namespace of the thread that later uses it.
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

/// Builds one message: header, fixed part, attributes (nested ones through `nest`).
struct Msg {
    buf: Vec<u8>,
    nests: Vec<usize>,
}

impl Msg {
    fn new(kind: u16, flags: u16, seq: u32) -> Self {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, patched in finish()
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
        Msg {
            buf,
            nests: Vec::new(),
        }
    }

    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(b);
        self
    }

    fn align(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    fn attr(&mut self, kind: u16, data: &[u8]) -> &mut Self {
        let len = (4 + data.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.align();
        self
    }

    fn attr_str(&mut self, kind: u16, s: &str) -> &mut Self {
        let mut data = s.as_bytes().to_vec();
        data.push(0);
        self.attr(kind, &data)
    }

    fn nest(&mut self, kind: u16) -> &mut Self {
        self.nests.push(self.buf.len());
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        self
    }

    fn end_nest(&mut self) -> &mut Self {
        if let Some(start) = self.nests.pop() {
            let len = (self.buf.len() - start) as u16;
            self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        }
        self
    }

    fn finish(mut self) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

/// struct ifinfomsg: family, pad, type, index, flags, change.
fn ifinfomsg(index: i32, flags: u32, change: u32) -> [u8; IFINFOMSG_LEN] {
    let mut m = [0u8; IFINFOMSG_LEN];
    m[4..8].copy_from_slice(&index.to_ne_bytes());
    m[8..12].copy_from_slice(&flags.to_ne_bytes());
    m[12..16].copy_from_slice(&change.to_ne_bytes());
    m
}

impl Netlink {
    /// A socket in the calling thread's network namespace.
    pub fn open() -> io::Result<Self> {
        // SAFETY: plain socket syscall with integer arguments.
        let fd = check(unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        })?;
        // SAFETY: socket succeeded; the descriptor is ours.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: a zeroed sockaddr_nl is valid; we then set its family.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: addr is a valid sockaddr_nl of the size passed.
        check(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        })?;
        Ok(Netlink { fd, seq: 0 })
    }

    fn send(&mut self, msg: Vec<u8>) -> io::Result<()> {
        // SAFETY: msg is a valid buffer of the given length.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn recv(&self) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            // SAFETY: buf is valid for writes of its length.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n >= 0 {
                buf.truncate(n as usize);
                return Ok(buf);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Send and wait for the acknowledgement of `seq`. Data messages for `seq` (answers to GET
    /// requests) are passed to `on_data`.
    fn transact(
        &mut self,
        msg: Msg,
        seq: u32,
        mut on_data: impl FnMut(u16, &[u8]),
    ) -> io::Result<()> {
        self.send(msg.finish())?;
        loop {
            let buf = self.recv()?;
            let mut off = 0;
            while off + 16 <= buf.len() {
                let len = u32::from_ne_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]])
                    as usize;
                let kind = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
                let mseq =
                    u32::from_ne_bytes([buf[off + 8], buf[off + 9], buf[off + 10], buf[off + 11]]);
                if len < 16 || off + len > buf.len() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "bad netlink reply",
                    ));
                }
                let body = &buf[off + 16..off + len];
                if mseq == seq {
                    match kind {
                        NLMSG_ERROR => {
                            let code = i32::from_ne_bytes([body[0], body[1], body[2], body[3]]);
                            return if code == 0 {
                                Ok(())
                            } else {
                                Err(io::Error::from_raw_os_error(-code))
                            };
                        }
                        NLMSG_DONE => return Ok(()),
                        _ => on_data(kind, body),
                    }
                }
                off += (len + 3) & !3;
            }
        }
    }

    /// Create a veth pair: `name` here, `peer` in the namespace of `peer_netns`.
    pub fn create_veth(&mut self, name: &str, peer: &str, peer_netns: RawFd) -> io::Result<()> {
        let seq = self.next_seq();
        let mut m = Msg::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, seq);
        m.bytes(&ifinfomsg(0, 0, 0))
            .attr_str(IFLA_IFNAME, name)
            .nest(IFLA_LINKINFO)
            .attr_str(IFLA_INFO_KIND, "veth")
            .nest(IFLA_INFO_DATA)
            .nest(VETH_INFO_PEER)
            .bytes(&ifinfomsg(0, 0, 0))
            .attr_str(IFLA_IFNAME, peer)
            .attr(IFLA_NET_NS_FD, &peer_netns.to_ne_bytes())
            .end_nest()
            .end_nest()
            .end_nest();
        self.transact(m, seq, |_, _| {})
    }

    /// Interface index by name.
    pub fn link_index(&mut self, name: &str) -> io::Result<i32> {
        let seq = self.next_seq();
        let mut m = Msg::new(RTM_GETLINK, 0, seq);
        m.bytes(&ifinfomsg(0, 0, 0)).attr_str(IFLA_IFNAME, name);
        let mut index = None;
        self.transact(m, seq, |kind, body| {
            if kind == RTM_NEWLINK && body.len() >= IFINFOMSG_LEN {
                index = Some(i32::from_ne_bytes([body[4], body[5], body[6], body[7]]));
            }
        })?;
        index.ok_or_else(|| io::Error::from_raw_os_error(libc::ENODEV))
    }

    pub fn set_up(&mut self, index: i32) -> io::Result<()> {
        let seq = self.next_seq();
        let mut m = Msg::new(RTM_NEWLINK, 0, seq);
        m.bytes(&ifinfomsg(index, IFF_UP, IFF_UP));
        self.transact(m, seq, |_, _| {})
    }

    pub fn add_address(&mut self, index: i32, addr: Ipv4Addr, prefix: u8) -> io::Result<()> {
        let seq = self.next_seq();
        let mut m = Msg::new(RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, seq);
        // struct ifaddrmsg: family, prefixlen, flags, scope, index.
        let mut ifa = [0u8; 8];
        ifa[0] = libc::AF_INET as u8;
        ifa[1] = prefix;
        ifa[4..8].copy_from_slice(&(index as u32).to_ne_bytes());
        m.bytes(&ifa)
            .attr(IFA_LOCAL, &addr.octets())
            .attr(IFA_ADDRESS, &addr.octets());
        self.transact(m, seq, |_, _| {})
    }

    pub fn add_default_route(&mut self, gateway: Ipv4Addr) -> io::Result<()> {
        let seq = self.next_seq();
        let mut m = Msg::new(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, seq);
        // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags.
        let mut rt = [0u8; 12];
        rt[0] = libc::AF_INET as u8;
        rt[4] = libc::RT_TABLE_MAIN;
        rt[5] = libc::RTPROT_BOOT;
        rt[6] = libc::RT_SCOPE_UNIVERSE;
        rt[7] = libc::RTN_UNICAST;
        m.bytes(&rt).attr(RTA_GATEWAY, &gateway.octets());
        self.transact(m, seq, |_, _| {})
    }

    /// Delete an interface by name (its veth peer goes with it). Missing is not an error.
    pub fn delete_link(&mut self, name: &str) -> io::Result<()> {
        let seq = self.next_seq();
        let mut m = Msg::new(RTM_DELLINK, 0, seq);
        m.bytes(&ifinfomsg(0, 0, 0)).attr_str(IFLA_IFNAME, name);
        match self.transact(m, seq, |_, _| {}) {
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(()),
            r => r,
        }
    }
}
