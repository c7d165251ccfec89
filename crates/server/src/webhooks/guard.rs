//! Which URLs a webhook may point at. Deliveries are requests the server makes on a user's
//! behalf, so a URL must not reach the host's own services or private networks (SSRF): the
//! host is resolved, and loopback, private, link-local, shared, multicast and reserved
//! addresses are refused, as are the addresses of the host's own interfaces. The check runs
//! when an endpoint is saved and again inside the HTTP client's resolver at every send, so a
//! name that later resolves elsewhere (DNS rebinding) is refused too. An operator can allow
//! all of it with `--allow-private-webhooks` (tests on loopback do).

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlRefused {
    #[error("webhook url is not a valid absolute URL: {0}")]
    Invalid(String),
    #[error("webhook url must use http or https, not {0:?}")]
    Scheme(String),
    #[error("webhook url must not carry a user name or password")]
    Credentials,
    #[error("webhook host {0:?} does not resolve")]
    Unresolvable(String),
    #[error("webhook host {host:?} resolves to {addr}, a loopback, private, link-local or host address; the operator can allow these with --allow-private-webhooks")]
    Private { host: String, addr: IpAddr },
}

/// Parse and check the form of a URL (no resolution).
pub fn parse(url: &str) -> Result<Url, UrlRefused> {
    let parsed = Url::parse(url.trim()).map_err(|e| UrlRefused::Invalid(e.to_string()))?;
    match parsed.scheme() {
        "http" | "https" => {}
        other => return Err(UrlRefused::Scheme(other.to_owned())),
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(UrlRefused::Credentials);
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(UrlRefused::Invalid("no host".into()));
    }
    Ok(parsed)
}

/// The whole check: form, then every address the host resolves to.
pub async fn check(url: &str, allow_private: bool) -> Result<Url, UrlRefused> {
    let parsed = parse(url)?;
    if allow_private {
        return Ok(parsed);
    }
    let host = parsed.host_str().unwrap_or_default().to_owned();
    let port = parsed.port_or_known_default().unwrap_or(80);
    match literal(&host) {
        Some(ip) => refuse_private(&host, ip)?,
        None => {
            let addrs = resolve(&host, port)
                .await
                .map_err(|_| UrlRefused::Unresolvable(host.clone()))?;
            if addrs.is_empty() {
                return Err(UrlRefused::Unresolvable(host));
            }
            for a in addrs {
                refuse_private(&host, a.ip())?;
            }
        }
    }
    Ok(parsed)
}

/// At send time: the form, and the host when it is an address literal (names are checked by
/// [`GuardedResolver`] as the client resolves them).
pub fn check_literal(url: &str, allow_private: bool) -> Result<Url, UrlRefused> {
    let parsed = parse(url)?;
    if !allow_private {
        let host = parsed.host_str().unwrap_or_default();
        if let Some(ip) = literal(host) {
            refuse_private(host, ip)?;
        }
    }
    Ok(parsed)
}

fn literal(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .ok()
}

async fn resolve(host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    Ok(tokio::net::lookup_host((host, port)).await?.collect())
}

fn refuse_private(host: &str, ip: IpAddr) -> Result<(), UrlRefused> {
    if is_private(ip) || is_own(ip) {
        return Err(UrlRefused::Private {
            host: host.to_owned(),
            addr: ip,
        });
    }
    Ok(())
}

/// Addresses that are not the public internet.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_private_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private_v4(v4);
            }
            let s = v6.segments();
            v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated) fec0::/10
                || (s[0] == 0x64 && s[1] == 0xff9b) // NAT64 64:ff9b::/96 reaches IPv4 space
                || (s[0] == 0x2001 && s[1] == 0xdb8) // documentation
                || (s[0..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible ::a.b.c.d
        }
    }
}

fn is_private_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240 // reserved
}

/// Whether `ip` is one of this host's own addresses: binding a socket to it succeeds only then.
fn is_own(ip: IpAddr) -> bool {
    let unspecified = match ip {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    ip != unspecified && UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// The HTTP client's resolver: the system's, with every refused address filtered out (and an
/// error when none is left).
#[derive(Debug, Default)]
pub struct GuardedResolver {
    pub allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        let allow = self.allow_private;
        Box::pin(async move {
            let addrs = resolve(&host, 0).await?;
            let kept: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| allow || !(is_private(a.ip()) || is_own(a.ip())))
                .collect();
            if kept.is_empty() {
                return Err(format!(
                    "webhook host {host:?} resolves only to refused (private or host) addresses"
                )
                .into());
            }
            let addrs: Addrs = Box::new(kept.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_ranges() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "93.184.216.34"] {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn refused_urls() {
        assert!(matches!(
            check("http://127.0.0.1:8080/hook", false).await,
            Err(UrlRefused::Private { .. })
        ));
        assert!(matches!(
            check("http://[::1]/hook", false).await,
            Err(UrlRefused::Private { .. })
        ));
        assert!(matches!(
            check("http://localhost/hook", false).await,
            Err(UrlRefused::Private { .. })
        ));
        assert!(matches!(
            check("ftp://example.com/", false).await,
            Err(UrlRefused::Scheme(_))
        ));
        assert!(matches!(
            check("http://u:p@example.com/", false).await,
            Err(UrlRefused::Credentials)
        ));
        assert!(matches!(
            check("not a url", false).await,
            Err(UrlRefused::Invalid(_))
        ));
        assert!(check("http://127.0.0.1:8080/hook", true).await.is_ok());
        // A public literal passes without resolving anything.
        assert!(check("https://93.184.216.34/hook", false).await.is_ok());
    }
}
