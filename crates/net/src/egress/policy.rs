//! What a policy means: validation of the API's five fields, name patterns, CIDRs, private
//! ranges and the package-registry list. The combination table is in docs/network.md.

use instavm_runtime::EgressPolicy;
use std::fmt;
use std::net::Ipv4Addr;

/// Most entries a policy may list (domains and CIDRs each).
pub const MAX_ENTRIES: usize = 256;

/// Registry hosts `allow_package_managers` (`allow_public_repos`) opens in a closed policy.
/// Kept short and explicit: every entry is a name a package manager really fetches from.
pub const PACKAGE_REGISTRY_HOSTS: &[&str] = &[
    // Python: pip, uv, poetry
    "pypi.org",
    "files.pythonhosted.org",
    "pypi.python.org",
    // JavaScript: npm, yarn, pnpm
    "registry.npmjs.org",
    "registry.yarnpkg.com",
    // Debian and Ubuntu apt
    "deb.debian.org",
    "security.debian.org",
    "archive.ubuntu.com",
    "security.ubuntu.com",
    // Rust: cargo, rustup
    "crates.io",
    "index.crates.io",
    "static.crates.io",
    "static.rust-lang.org",
    // Go modules
    "proxy.golang.org",
    "sum.golang.org",
    "storage.googleapis.com",
    // Ruby gems
    "rubygems.org",
    "index.rubygems.org",
    // Java: Maven Central
    "repo.maven.apache.org",
    "repo1.maven.org",
    // Conda
    "conda.anaconda.org",
    "repo.anaconda.com",
    // Alpine apk
    "dl-cdn.alpinelinux.org",
    // GitHub: `pip install git+https://…`, Go modules without a proxy, release downloads, ghcr
    "github.com",
    "codeload.github.com",
    "objects.githubusercontent.com",
    "raw.githubusercontent.com",
    "ghcr.io",
    "pkg-containers.githubusercontent.com",
];

/// An IPv4 network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    pub addr: u32,
    pub len: u8,
}

impl Cidr {
    /// `a.b.c.d/n` or a bare address (`/32`); host bits must be zero... or are cleared.
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let s = s.trim();
        let (ip, len) = match s.split_once('/') {
            Some((ip, len)) => (
                ip,
                len.parse::<u8>()
                    .ok()
                    .filter(|l| *l <= 32)
                    .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to 32"))?,
            ),
            None => (s, 32),
        };
        if ip.contains(':') {
            return Err(format!(
                "{s:?}: IPv6 is not supported (sandboxes have no IPv6 egress)"
            ));
        }
        let ip: Ipv4Addr = ip
            .parse()
            .map_err(|_| format!("{s:?} is not an IPv4 address or CIDR"))?;
        Ok(Cidr {
            addr: u32::from(ip) & mask(len),
            len,
        })
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.len) == self.addr
    }

    pub fn first(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.addr)
    }
}

fn mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.addr), self.len)
    }
}

/// Ranges no sandbox reaches unless an operator removes them (`--allow-private-range`):
/// RFC 1918, shared address space (RFC 6598), loopback, link-local, "this network", multicast
/// and reserved. 198.18.0.0/15 (RFC 2544) is not among them. IPv6 is never forwarded at all
/// (so ULA, fc00::/7, and everything else of IPv6 is out of reach).
pub const DEFAULT_PRIVATE_RANGES: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.168.0.0/16",
    "224.0.0.0/4",
    "240.0.0.0/4",
];

/// The host's private ranges after the operator's flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivateRanges {
    /// Blocked for every sandbox...
    pub blocked: Vec<Cidr>,
    /// ...except these (`--allow-private-range`), which are reachable like the internet.
    pub excepted: Vec<Cidr>,
}

impl Default for PrivateRanges {
    fn default() -> Self {
        PrivateRanges::new(&[], &[]).expect("the default ranges parse")
    }
}

impl PrivateRanges {
    /// The defaults, plus `add`, minus `remove` (a removed range may be part of a blocked one,
    /// e.g. `10.20.0.0/16` out of `10.0.0.0/8`).
    pub fn new(add: &[String], remove: &[String]) -> Result<Self, String> {
        let mut blocked: Vec<Cidr> = DEFAULT_PRIVATE_RANGES
            .iter()
            .map(|s| Cidr::parse(s))
            .collect::<Result<_, _>>()?;
        for a in add {
            blocked.push(Cidr::parse(a)?);
        }
        let mut excepted = Vec::new();
        for r in remove {
            let c = Cidr::parse(r)?;
            // A whole entry goes away; a part of one becomes an exception.
            let before = blocked.len();
            blocked.retain(|b| *b != c);
            if blocked.len() == before {
                excepted.push(c);
            }
        }
        Ok(PrivateRanges { blocked, excepted })
    }

    pub fn is_private(&self, ip: Ipv4Addr) -> bool {
        self.blocked.iter().any(|c| c.contains(ip)) && !self.excepted.iter().any(|c| c.contains(ip))
    }
}

/// One entry of `allowed_domains`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    /// `example.com`: that name only.
    Exact(String),
    /// `*.example.com`: any name under it (not `example.com` itself); stored as `.example.com`.
    Suffix(String),
}

impl Pattern {
    pub fn matches(&self, name: &str) -> bool {
        match self {
            Pattern::Exact(n) => n == name,
            Pattern::Suffix(s) => name.len() > s.len() && name.ends_with(s.as_str()),
        }
    }
}

/// Normalise a domain entry: lowercase, no final dot, LDH labels, an optional leading `*.`.
pub fn normalize_domain(entry: &str) -> Result<String, String> {
    let d = entry.trim().trim_end_matches('.').to_ascii_lowercase();
    let (wild, rest) = match d.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, d.as_str()),
    };
    let valid_label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if rest.is_empty() || rest.len() > 253 || !rest.split('.').all(valid_label) {
        return Err(format!("{entry:?} is not a domain name (or *.domain)"));
    }
    if rest.parse::<Ipv4Addr>().is_ok() {
        return Err(format!("{entry:?} is an address: put it in allowed_cidrs"));
    }
    if wild && !rest.contains('.') {
        return Err(format!("{entry:?}: a wildcard needs a domain with a dot"));
    }
    Ok(d)
}

/// Check and normalise a policy as the API received it: domains lowercase and deduplicated,
/// CIDRs canonical. The error is the message for a 422.
pub fn validate(policy: &EgressPolicy) -> Result<EgressPolicy, String> {
    if policy.allowed_domains.len() > MAX_ENTRIES || policy.allowed_cidrs.len() > MAX_ENTRIES {
        return Err(format!(
            "at most {MAX_ENTRIES} allowed_domains and {MAX_ENTRIES} allowed_cidrs"
        ));
    }
    let mut domains = Vec::new();
    for d in &policy.allowed_domains {
        let d = normalize_domain(d)?;
        if !domains.contains(&d) {
            domains.push(d);
        }
    }
    let mut cidrs = Vec::new();
    for c in &policy.allowed_cidrs {
        let c = Cidr::parse(c)?.to_string();
        if !cidrs.contains(&c) {
            cidrs.push(c);
        }
    }
    Ok(EgressPolicy {
        allowed_domains: domains,
        allowed_cidrs: cidrs,
        ..policy.clone()
    })
}

/// A policy ready to be applied: what the resolver, the gate and the firewall ask.
#[derive(Debug, Clone)]
pub struct Rules {
    pub policy: EgressPolicy,
    /// http and https both allowed: the public internet, no filtering (domain lists ignored).
    pub open: bool,
    pub names: Vec<Pattern>,
    pub cidrs: Vec<Cidr>,
}

impl Rules {
    /// Rules from a policy; entries that do not parse are skipped (the server validated them).
    pub fn new(policy: &EgressPolicy) -> Rules {
        let mut names: Vec<Pattern> = Vec::new();
        let mut add = |d: &str| {
            if let Ok(d) = normalize_domain(d) {
                let p = match d.strip_prefix('*') {
                    Some(suffix) => Pattern::Suffix(suffix.to_owned()),
                    None => Pattern::Exact(d),
                };
                if !names.contains(&p) {
                    names.push(p);
                }
            }
        };
        for d in &policy.allowed_domains {
            add(d);
        }
        if policy.allow_package_managers {
            for d in PACKAGE_REGISTRY_HOSTS {
                add(d);
            }
        }
        Rules {
            open: policy.is_open(),
            names,
            cidrs: policy
                .allowed_cidrs
                .iter()
                .filter_map(|c| Cidr::parse(c).ok())
                .collect(),
            policy: policy.clone(),
        }
    }

    /// A name the policy allows by name (its addresses get pinned).
    pub fn name_allowed(&self, name: &str) -> bool {
        self.open || self.names.iter().any(|p| p.matches(name))
    }

    /// Whether names outside the allowlist still resolve (not pinned): when a port is open to
    /// every address anyway (`allow_http` or `allow_https` alone).
    pub fn resolves_every_name(&self) -> bool {
        self.policy.allow_http || self.policy.allow_https
    }

    pub fn cidr_allowed(&self, ip: Ipv4Addr) -> bool {
        self.cidrs.iter().any(|c| c.contains(ip))
    }
}

/// A name as the resolver and the gate compare it: lowercase, no final dot.
pub fn canonical_name(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn closed(domains: &[&str]) -> EgressPolicy {
        EgressPolicy {
            allow_package_managers: false,
            allow_http: false,
            allow_https: false,
            allowed_domains: domains.iter().map(|s| s.to_string()).collect(),
            allowed_cidrs: vec![],
        }
    }

    #[test]
    fn cidrs_parse_and_match() {
        let c = Cidr::parse("198.18.5.7/24").unwrap();
        assert_eq!(c.to_string(), "198.18.5.0/24");
        assert!(c.contains("198.18.5.200".parse().unwrap()));
        assert!(!c.contains("198.18.6.1".parse().unwrap()));
        assert_eq!(Cidr::parse("1.2.3.4").unwrap().to_string(), "1.2.3.4/32");
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("1.2.3.4/33").is_err());
        assert!(Cidr::parse("::1/128").is_err());
        assert!(Cidr::parse("example.com").is_err());
    }

    #[test]
    fn domains_normalise_and_wildcards_match() {
        assert_eq!(normalize_domain("Example.COM.").unwrap(), "example.com");
        assert_eq!(normalize_domain("*.Example.com").unwrap(), "*.example.com");
        for bad in [
            "",
            "*",
            "*.com",
            "a..b",
            "-a.com",
            "a b.com",
            "1.2.3.4",
            "a.com/x",
            "*.*.a.com",
        ] {
            assert!(normalize_domain(bad).is_err(), "{bad}");
        }
        let r = Rules::new(&closed(&["example.com", "*.test.org"]));
        assert!(r.name_allowed("example.com"));
        assert!(!r.name_allowed("www.example.com"));
        assert!(r.name_allowed("a.test.org") && r.name_allowed("a.b.test.org"));
        assert!(!r.name_allowed("test.org"));
        assert!(!r.name_allowed("eviltest.org"));
        assert!(!r.name_allowed("pypi.org"));
    }

    #[test]
    fn package_managers_and_open_policies() {
        let mut p = closed(&[]);
        p.allow_package_managers = true;
        let r = Rules::new(&p);
        assert!(!r.open);
        for n in [
            "pypi.org",
            "files.pythonhosted.org",
            "registry.npmjs.org",
            "deb.debian.org",
        ] {
            assert!(r.name_allowed(n), "{n}");
        }
        assert!(!r.name_allowed("example.com"));
        let open = Rules::new(&EgressPolicy {
            allowed_domains: vec!["only.example".into()],
            ..EgressPolicy::default()
        });
        assert!(open.open && open.name_allowed("anything.example"));
    }

    #[test]
    fn validation() {
        let v = validate(&EgressPolicy {
            allowed_domains: vec!["A.com".into(), "a.com".into()],
            allowed_cidrs: vec!["10.1.2.3/8".into()],
            ..closed(&[])
        })
        .unwrap();
        assert_eq!(v.allowed_domains, vec!["a.com"]);
        assert_eq!(v.allowed_cidrs, vec!["10.0.0.0/8"]);
        assert!(validate(&closed(&["not a domain"])).is_err());
    }

    #[test]
    fn private_ranges_with_flags() {
        let d = PrivateRanges::default();
        for ip in [
            "10.1.1.1",
            "172.20.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "127.0.0.1",
            "169.254.169.254",
        ] {
            assert!(d.is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["198.18.0.1", "198.19.255.1", "8.8.8.8", "1.1.1.1"] {
            assert!(!d.is_private(ip.parse().unwrap()), "{ip}");
        }
        let p = PrivateRanges::new(
            &["198.18.0.0/15".into()],
            &["10.20.0.0/16".into(), "192.168.0.0/16".into()],
        )
        .unwrap();
        assert!(p.is_private("198.18.1.1".parse().unwrap()));
        assert!(!p.is_private("10.20.1.1".parse().unwrap()));
        assert!(p.is_private("10.21.1.1".parse().unwrap()));
        assert!(!p.is_private("192.168.1.1".parse().unwrap()));
        assert_eq!(p.excepted.len(), 1);
    }
}
