//! Traffic between VMs and the world, handled on the host (never by anything inside a VM).
//!
//! - [`egress`]: what a VM may reach (the per-VM DNS resolver, addresses pinned from its answers,
//!   the Host/SNI gate on ports 80 and 443, the nftables rules).
//! - [`share`]: the share proxy, HTTP/1.1 and WebSocket from a share URL to a port inside a VM.

pub mod egress;
pub mod share;
pub mod vault;
