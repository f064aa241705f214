//! Where model downloads may connect. A pull's URL may come from a user of
//! the inference API or a component, so by default the host refuses to
//! reach anything but public addresses: no loopback, private, link-local
//! (cloud metadata at 169.254.169.254 included), shared (CGNAT),
//! multicast or unspecified ones. Names are resolved here and only their
//! public addresses are dialled (so DNS cannot point a name inward), IP
//! literals are checked before the request, and every redirect hop is
//! checked again. The operator's CLI may reach any address; a host, the
//! non-public addresses its runtime-config lists in `[inference]
//! allowed_private_sources` (an internal mirror, a test's loopback server).

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::InferenceError;

/// Most redirects one download follows.
const MAX_REDIRECTS: usize = 5;

/// The policy for one process's downloads.
#[derive(Debug, Clone)]
pub struct Egress {
    /// `None`: any address.
    allowed: Option<Arc<Allowed>>,
}

/// Public addresses, plus these.
#[derive(Debug)]
struct Allowed(BTreeSet<IpAddr>);

impl Allowed {
    fn contains(&self, ip: IpAddr) -> bool {
        is_public(ip) || self.0.contains(&ip)
    }
}

impl Egress {
    /// Public addresses, and the non-public ones in `allowed_private`.
    pub fn new(allowed_private: &[IpAddr]) -> Self {
        Egress {
            allowed: Some(Arc::new(Allowed(allowed_private.iter().copied().collect()))),
        }
    }

    /// Any address: the operator's own command line.
    pub fn unrestricted() -> Self {
        Egress { allowed: None }
    }

    /// An HTTP client that connects only where this policy allows,
    /// following at most [`MAX_REDIRECTS`] redirects, each re-checked.
    pub fn client(&self) -> Result<reqwest::Client, InferenceError> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(60));
        let allowed = self.allowed.clone();
        builder = builder.redirect(reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
            }
            match check_url(attempt.url(), allowed.as_deref()) {
                Ok(()) => attempt.follow(),
                Err(_) => attempt.error(Refused),
            }
        }));
        if let Some(allowed) = &self.allowed {
            // A proxy from the environment would resolve names itself,
            // past the filter: none.
            builder = builder
                .no_proxy()
                .dns_resolver(Arc::new(AllowedOnly(allowed.clone())));
        }
        builder
            .build()
            .map_err(|e| InferenceError::Unavailable(format!("cannot start a download: {e}")))
    }

    /// Checks a URL before it is fetched: http(s), and no literal address
    /// the policy refuses.
    pub fn check(&self, url: &str) -> Result<(), InferenceError> {
        if self.allowed.is_none() {
            return Ok(()); // the operator's CLI: paths and file:// too
        }
        let parsed = reqwest::Url::parse(url)
            .map_err(|_| InferenceError::Invalid("the source must be an http(s) URL".to_owned()))?;
        check_url(&parsed, self.allowed.as_deref()).map_err(InferenceError::Invalid)
    }
}

/// The scheme, and a literal host's address (a name is checked when it
/// is resolved).
fn check_url(url: &reqwest::Url, allowed: Option<&Allowed>) -> Result<(), String> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err("models are fetched over http(s) only".to_owned());
    }
    let Some(host) = url.host_str() else {
        return Err("the source URL has no host".to_owned());
    };
    let literal = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>();
    match literal {
        Ok(ip) if allowed.is_some_and(|a| !a.contains(ip)) => Err(refused()),
        _ => Ok(()),
    }
}

fn refused() -> String {
    Refused.to_string()
}

/// A connection or redirect the policy refused: permanent, unlike a
/// network failure, so the pull ends instead of retrying.
#[derive(Debug)]
pub struct Refused;

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "the source is not a public address (loopback, private, link-local and metadata \
             addresses are refused unless runtime-config [inference] allowed_private_sources \
             lists them)",
        )
    }
}

impl std::error::Error for Refused {}

/// Whether `error` (or what caused it) is a refusal of this policy.
pub fn is_refusal(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if error.is::<Refused>() {
            return true;
        }
        cause = error.source();
    }
    false
}

/// Resolves names to the addresses the policy allows only.
struct AllowedOnly(Arc<Allowed>);

impl Resolve for AllowedOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let allowed = self.0.clone();
        Box::pin(async move {
            let found = tokio::net::lookup_host((name.as_str(), 0)).await?;
            let public: Vec<SocketAddr> = found.filter(|a| allowed.contains(a.ip())).collect();
            if public.is_empty() {
                return Err(Box::new(Refused) as Box<dyn std::error::Error + Send + Sync>);
            }
            let addrs: Addrs = Box::new(public.into_iter());
            Ok(addrs)
        })
    }
}

/// Whether `ip` is a public unicast address. IPv6 addresses that carry an
/// IPv4 one (mapped `::ffff:0:0/96`, compatible `::/96`, NAT64
/// `64:ff9b::/96`, 6to4 `2002::/16`) are judged as that IPv4 address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                // shared address space (CGNAT; some clouds' metadata)
                || (a == 100 && (64..128).contains(&b))
                // IETF protocol assignments, benchmarking, reserved
                || (a == 192 && b == 0 && v4.octets()[2] == 0)
                || (a == 198 && (18..20).contains(&b))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if v6.is_loopback() || v6.is_unspecified() {
                return false;
            }
            if let Some(v4) = embedded_ipv4(v6) {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_multicast()
                // unique local (fc00::/7), link-local (fe80::/10) and the
                // old site-local (fec0::/10)
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first & 0xffc0) == 0xfec0
                // documentation (2001:db8::/32)
                || (first == 0x2001 && v6.segments()[1] == 0x0db8))
        }
    }
}

/// The IPv4 address an IPv6 one carries, if it is of a kind that does.
fn embedded_ipv4(v6: std::net::Ipv6Addr) -> Option<std::net::Ipv4Addr> {
    let s = v6.segments();
    let octets = v6.octets();
    let tail = || std::net::Ipv4Addr::new(octets[12], octets[13], octets[14], octets[15]);
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    match s {
        // IPv4-compatible (deprecated) ::a.b.c.d
        [0, 0, 0, 0, 0, 0, _, _] => Some(tail()),
        // NAT64 well-known prefix 64:ff9b::/96
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(tail()),
        // 6to4 2002:AABB:CCDD::/48
        [0x2002, hi, lo, ..] => Some(std::net::Ipv4Addr::new(
            (hi >> 8) as u8,
            hi as u8,
            (lo >> 8) as u8,
            lo as u8,
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    #[test]
    fn only_public_addresses_are_public() {
        for refused in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.100.100.200",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2002:7f00:1::",
            "fec0::1",
        ] {
            assert!(!is_public(refused.parse().unwrap()), "{refused}");
        }
        for public in ["1.1.1.1", "93.184.216.34", "2606:4700:4700::1111"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn literal_addresses_and_schemes_are_checked_before_fetching() {
        let strict = Egress::new(&["127.0.0.2".parse().unwrap()]);
        for bad in [
            "http://127.0.0.1/m.gguf",
            "http://[::1]:8080/m.gguf",
            "http://169.254.169.254/latest/meta-data",
            "ftp://example.com/m.gguf",
        ] {
            assert!(strict.check(bad).is_err(), "{bad}");
        }
        assert!(strict.check("HTTPS://models.example.com/m.gguf").is_ok());
        assert!(
            strict.check("http://127.0.0.2:8080/m.gguf").is_ok(),
            "listed"
        );
        assert!(
            Egress::unrestricted()
                .check("http://127.0.0.1/m.gguf")
                .is_ok()
        );
        assert!(
            Egress::unrestricted()
                .check("file:///models/m.gguf")
                .is_ok()
        );
    }

    #[tokio::test]
    async fn names_resolving_inward_are_refused() {
        let refused = AllowedOnly(Arc::new(Allowed(BTreeSet::new())))
            .resolve(Name::from_str("localhost").unwrap())
            .await
            .err()
            .expect("localhost is loopback");
        assert!(refused.to_string().contains("not a public address"));
    }
}
