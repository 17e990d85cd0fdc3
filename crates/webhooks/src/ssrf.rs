//! The guard against server-side request forgery. Webhook URLs come from API callers, so the
//! service must not become a way to reach what only it can reach: loopback, private networks,
//! link-local addresses (among them cloud metadata services at 169.254.169.254) and the like are
//! refused unless configuration allows them.
//!
//! URLs are checked when an endpoint is created or changed, and again at every delivery on the
//! addresses the name resolves to at that moment ([`GuardedResolver`]): a name that resolved to a
//! public address at creation and to 127.0.0.1 later (DNS rebinding) is refused then. Redirects are
//! never followed, so a public endpoint cannot bounce a delivery elsewhere.

use hyper_util::client::legacy::connect::dns::Name;
use ipnet::IpNet;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use url::Url;

/// Longest accepted webhook URL, in bytes.
pub const MAX_URL_BYTES: usize = 2048;

/// How long resolving a name may take when a URL is checked.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Which addresses webhooks may be delivered to. By default only public unicast addresses.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetworkPolicy {
    /// Allow 127.0.0.0/8 and ::1 (tests, a receiver on the same host).
    pub allow_loopback: bool,
    /// Allow private networks: 10/8, 172.16/12, 192.168/16, 100.64/10 (shared address space) and
    /// fc00::/7.
    pub allow_private: bool,
    /// Networks allowed whatever their kind (for example one internal subnet).
    pub allowed_networks: Vec<IpNet>,
}

impl NetworkPolicy {
    /// Parses a comma-separated list of networks in CIDR notation (`10.1.0.0/16, fd00::/8`); a plain
    /// address stands for itself alone.
    pub fn parse_networks(list: &str) -> Result<Vec<IpNet>, String> {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("\"{s}\" is not a network in CIDR notation (such as 10.1.0.0/16)"))
            })
            .collect()
    }

    /// Whether deliveries may go to `ip`; the error says why not.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), String> {
        let ip = canonical(ip);
        if self.allowed_networks.iter().any(|n| n.contains(&ip)) {
            return Ok(());
        }
        let Some(kind) = special_kind(ip) else {
            return Ok(());
        };
        let allowed = match kind {
            Kind::Loopback => self.allow_loopback,
            Kind::Private => self.allow_private,
            Kind::Other(_) => false,
        };
        if allowed {
            Ok(())
        } else {
            let hint = match kind {
                Kind::Loopback => " (allow it with the webhook_allow_loopback setting)",
                Kind::Private => " (allow it with the webhook_allow_private setting)",
                Kind::Other(_) => " (allow it with the webhook_allowed_networks setting)",
            };
            Err(format!("{ip} is a {} address{hint}", kind.name()))
        }
    }

    /// Checks a URL's form (http or https, a host, no credentials, no fragment) and, when its host
    /// is an IP address, that address. Names are checked by [`NetworkPolicy::check_url`] and at
    /// delivery by [`GuardedResolver`].
    pub fn check_url_form(&self, raw: &str) -> Result<Url, String> {
        if raw.len() > MAX_URL_BYTES {
            return Err(format!("the URL is longer than {MAX_URL_BYTES} bytes"));
        }
        let url = Url::parse(raw.trim()).map_err(|e| format!("\"{raw}\" is not a valid URL: {e}"))?;
        if url.scheme() != "https" && url.scheme() != "http" {
            return Err(format!("the URL must use https or http, not \"{}\"", url.scheme()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("the URL must not contain credentials; authenticate deliveries by their signature".into());
        }
        if url.fragment().is_some() {
            return Err("the URL must not contain a fragment (#...)".into());
        }
        match url.host() {
            None => return Err("the URL has no host".into()),
            Some(url::Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip))?,
            Some(url::Host::Ipv6(ip)) => self.check_ip(IpAddr::V6(ip))?,
            Some(url::Host::Domain(_)) => {}
        }
        Ok(url)
    }

    /// Checks a URL completely: its form, and every address its host resolves to now.
    pub async fn check_url(&self, raw: &str) -> Result<Url, String> {
        let url = self.check_url_form(raw)?;
        if let Some(url::Host::Domain(host)) = url.host() {
            self.resolve(host).await?;
        }
        Ok(url)
    }

    /// Resolves `host`, refusing it when it resolves to nothing or to any address that is not
    /// allowed.
    pub async fn resolve(&self, host: &str) -> Result<Vec<SocketAddr>, String> {
        let lookup = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, 0)))
            .await
            .map_err(|_| format!("resolving \"{host}\" took longer than {RESOLVE_TIMEOUT:?}"))?
            .map_err(|e| format!("\"{host}\" does not resolve: {e}"))?;
        let addrs: Vec<SocketAddr> = lookup.collect();
        if addrs.is_empty() {
            return Err(format!("\"{host}\" resolves to no address"));
        }
        for a in &addrs {
            self.check_ip(a.ip())
                .map_err(|e| format!("\"{host}\" resolves to a refused address: {e}"))?;
        }
        Ok(addrs)
    }
}

/// The kinds of addresses that are not public unicast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Loopback,
    Private,
    /// Never allowed by a kind switch, only by an explicit network: link-local, unspecified,
    /// multicast, broadcast, reserved, documentation, benchmarking.
    Other(&'static str),
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Loopback => "loopback",
            Kind::Private => "private",
            Kind::Other(name) => name,
        }
    }
}

/// An IPv4 address carried in IPv6 (mapped, or NAT64 well-known prefix) as the IPv4 address, so
/// that `::ffff:127.0.0.1` is judged as 127.0.0.1.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let s = v6.segments();
            if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
                let o = v6.octets();
                return IpAddr::V4(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
            }
            ip
        }
        v4 => v4,
    }
}

fn in_net(ip: IpAddr, net: &str) -> bool {
    net.parse::<IpNet>().is_ok_and(|n| n.contains(&ip))
}

fn special_kind(ip: IpAddr) -> Option<Kind> {
    match ip {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => special_v6(v6),
    }
}

fn special_v4(ip: Ipv4Addr) -> Option<Kind> {
    let a = IpAddr::V4(ip);
    if ip.is_loopback() {
        Some(Kind::Loopback)
    } else if ip.is_private() || in_net(a, "100.64.0.0/10") {
        Some(Kind::Private)
    } else if ip.is_link_local() {
        Some(Kind::Other("link-local"))
    } else if in_net(a, "0.0.0.0/8") {
        Some(Kind::Other("unspecified"))
    } else if ip.is_multicast() {
        Some(Kind::Other("multicast"))
    } else if ip.is_broadcast() || in_net(a, "240.0.0.0/4") {
        Some(Kind::Other("reserved"))
    } else if in_net(a, "192.0.0.0/24") || in_net(a, "198.18.0.0/15") {
        Some(Kind::Other("special-purpose"))
    } else if ip.is_documentation() {
        Some(Kind::Other("documentation"))
    } else {
        None
    }
}

fn special_v6(ip: Ipv6Addr) -> Option<Kind> {
    let a = IpAddr::V6(ip);
    if ip.is_loopback() {
        Some(Kind::Loopback)
    } else if in_net(a, "fc00::/7") {
        Some(Kind::Private)
    } else if in_net(a, "fe80::/10") {
        Some(Kind::Other("link-local"))
    } else if ip.is_unspecified() {
        Some(Kind::Other("unspecified"))
    } else if ip.is_multicast() {
        Some(Kind::Other("multicast"))
    } else if in_net(a, "2001:db8::/32") {
        Some(Kind::Other("documentation"))
    } else if in_net(a, "2002::/16") || in_net(a, "::/96") || in_net(a, "100::/64") {
        // 6to4 and IPv4-compatible addresses embed IPv4 addresses; discard-only 100::/64.
        Some(Kind::Other("special-purpose"))
    } else {
        None
    }
}

/// A resolver for the delivery client that answers only with allowed addresses: every connection
/// a delivery opens goes to an address checked at that moment.
#[derive(Clone)]
pub struct GuardedResolver {
    policy: Arc<NetworkPolicy>,
}

impl GuardedResolver {
    pub fn new(policy: Arc<NetworkPolicy>) -> GuardedResolver {
        GuardedResolver { policy }
    }
}

/// Why the resolver refused a name.
#[derive(Debug)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = Refused;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Refused>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Refused>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = self.policy.clone();
        Box::pin(async move {
            let addrs = policy.resolve(name.as_str()).await.map_err(Refused)?;
            Ok(addrs.into_iter())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn refuses_what_is_not_public_by_default() {
        let p = NetworkPolicy::default();
        for refused in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
        ] {
            assert!(p.check_ip(ip(refused)).is_err(), "{refused} should be refused");
        }
        for allowed in ["93.184.215.14", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(p.check_ip(ip(allowed)).is_ok(), "{allowed} should be allowed");
        }
    }

    #[test]
    fn configuration_allows_kinds_and_networks() {
        let p = NetworkPolicy {
            allow_loopback: true,
            ..Default::default()
        };
        assert!(p.check_ip(ip("127.0.0.1")).is_ok());
        assert!(p.check_ip(ip("::ffff:127.0.0.1")).is_ok());
        assert!(p.check_ip(ip("10.0.0.1")).is_err());
        let p = NetworkPolicy {
            allow_private: true,
            ..Default::default()
        };
        assert!(p.check_ip(ip("10.0.0.1")).is_ok());
        assert!(
            p.check_ip(ip("169.254.169.254")).is_err(),
            "link-local needs an explicit network"
        );
        let p = NetworkPolicy {
            allowed_networks: NetworkPolicy::parse_networks("169.254.0.0/16, 10.9.9.9").unwrap(),
            ..Default::default()
        };
        assert!(p.check_ip(ip("169.254.1.1")).is_ok());
        assert!(p.check_ip(ip("10.9.9.9")).is_ok());
        assert!(p.check_ip(ip("10.9.9.10")).is_err());
        assert!(NetworkPolicy::parse_networks("10.0.0.0/33").is_err());
    }

    #[test]
    fn url_forms() {
        let p = NetworkPolicy::default();
        assert!(p.check_url_form("https://hooks.example.com/x?y=1").is_ok());
        let err = |u: &str| p.check_url_form(u).unwrap_err();
        assert!(err("ftp://example.com/").contains("https or http"));
        assert!(err("https://user:pw@example.com/").contains("credentials"));
        assert!(err("https://example.com/#x").contains("fragment"));
        assert!(err("not a url").contains("not a valid URL"));
        assert!(err("http://127.0.0.1:8080/").contains("loopback"));
        assert!(err("http://[::1]/").contains("loopback"));
        assert!(err("http://169.254.169.254/latest/meta-data").contains("link-local"));
        // Integer and hexadecimal forms of 127.0.0.1 are normalised by the URL parser.
        assert!(err("http://2130706433/").contains("loopback"));
        assert!(err("http://0x7f.1/").contains("loopback"));
    }

    #[tokio::test]
    async fn names_are_checked_on_what_they_resolve_to() {
        let p = NetworkPolicy::default();
        let e = p.check_url("http://localhost:9/").await.unwrap_err();
        assert!(e.contains("refused address"), "{e}");
        let allowed = NetworkPolicy {
            allow_loopback: true,
            ..Default::default()
        };
        assert!(allowed.check_url("http://localhost:9/").await.is_ok());
    }
}
