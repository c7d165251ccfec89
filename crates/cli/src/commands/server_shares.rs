//! `instavm server` flags of the share proxy (docs/network.md).

use clap::Args;
use instavm_net::share::ShareMode;
use instavm_server::ShareSettings;
use std::net::{IpAddr, SocketAddr};

#[derive(Args, Debug)]
pub struct ShareArgs {
    /// The share proxy's address, or `off`. Ports mode: an IP (each share gets a port of
    /// --share-ports on it). With --share-domain: IP:PORT of the one listener (IP alone: port 80).
    #[arg(long, env = "INSTAVM_SHARE_LISTEN", default_value = "127.0.0.1")]
    pub share_listen: String,
    /// Ports mode: the range share ports come from, START-END.
    #[arg(long, env = "INSTAVM_SHARE_PORTS", default_value = "20000-29999", value_parser = parse_range)]
    pub share_ports: (u16, u16),
    /// A wildcard domain you control: share URLs become <share_id>.<domain> on one port.
    #[arg(long, env = "INSTAVM_SHARE_DOMAIN")]
    pub share_domain: Option<String>,
    /// Ports mode: the host share URLs name [default: the --share-listen address].
    #[arg(long = "public-share-host", env = "INSTAVM_PUBLIC_SHARE_HOST")]
    pub public_share_host: Option<String>,
    /// Domain mode: the scheme share URLs use (`https` when TLS ends in front of the proxy).
    #[arg(long, env = "INSTAVM_SHARE_SCHEME", default_value = "http", value_parser = ["http", "https"])]
    pub share_scheme: String,
    /// Domain mode: the port share URLs name [default: the listener's].
    #[arg(long, env = "INSTAVM_SHARE_PUBLIC_PORT")]
    pub share_public_port: Option<u16>,
}

fn parse_range(text: &str) -> Result<(u16, u16), String> {
    let bad = || format!("{text:?} is not a port range like 20000-29999");
    let (a, b) = text.trim().split_once('-').ok_or_else(bad)?;
    let (a, b): (u16, u16) = (
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    );
    if a == 0 || a > b {
        return Err(bad());
    }
    Ok((a, b))
}

impl ShareArgs {
    /// `None` when shares are turned off.
    pub fn settings(&self) -> anyhow::Result<Option<ShareSettings>> {
        let listen = self.share_listen.trim();
        if matches!(listen, "off" | "none" | "") {
            return Ok(None);
        }
        let mode = match self.share_domain.as_deref().map(str::trim) {
            Some(domain) if !domain.is_empty() => {
                let domain = domain.trim_matches('.').to_ascii_lowercase();
                let listen = match listen.parse::<IpAddr>() {
                    Ok(ip) => SocketAddr::new(ip, 80),
                    Err(_) => listen.parse::<SocketAddr>().map_err(|_| {
                        anyhow::anyhow!("--share-listen {listen:?} is not an IP or IP:PORT")
                    })?,
                };
                ShareMode::Domain { listen, domain }
            }
            _ => {
                let ip = listen.parse::<IpAddr>().map_err(|_| {
                    anyhow::anyhow!(
                        "--share-listen {listen:?} is not an IP address (in ports mode shares take their ports from --share-ports)"
                    )
                })?;
                let (first, last) = self.share_ports;
                ShareMode::Ports { ip, first, last }
            }
        };
        Ok(Some(ShareSettings {
            mode,
            public_host: self
                .public_share_host
                .clone()
                .filter(|h| !h.trim().is_empty()),
            scheme: self.share_scheme.clone(),
            public_port: self.share_public_port,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("20000-29999"), Ok((20000, 29999)));
        assert_eq!(parse_range(" 5 - 5 "), Ok((5, 5)));
        for bad in ["", "1", "0-10", "10-1", "1-70000", "a-b"] {
            assert!(parse_range(bad).is_err(), "{bad}");
        }
    }
}
