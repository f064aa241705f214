//! Who the client is, for per-address rate limits and the audit log.
//!
//! The peer of the TCP connection is the client unless it is one of the
//! proxies runtime-config trusts (`[http] trusted_proxies`, CIDRs): only
//! then is the one forwarding header the proxies write (`[http]
//! forwarded_header`: `x-forwarded-for`, or `forwarded`'s `for=`) read,
//! right to left, skipping trusted proxies, and the first address that is
//! not one is the client. A header from any other peer is ignored, and so
//! is the other header (a proxy passes on whatever a client sent in the
//! one it does not write), so a client cannot pick the address it is
//! limited by. IPv4 peers of a dual-stack listener (`::ffff:a.b.c.d`) are
//! taken as the IPv4 addresses they are.
//!
//! An IPv6 client is limited by its /64: one subscriber usually holds a
//! whole /64 and could otherwise rotate through 2^64 addresses.

use std::net::IpAddr;

use http::HeaderMap;
use ipnet::IpNet;

/// Which header the trusted proxies write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, ...` (what most proxies write).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for=proxy1`.
    Forwarded,
}

/// How the client address is found.
#[derive(Debug, Clone, Default)]
pub struct ClientAddress {
    trusted: Vec<IpNet>,
    header: ForwardedHeader,
}

impl ClientAddress {
    /// Believes `header` from peers in `trusted_proxies` only.
    pub fn new(trusted_proxies: &[IpNet], header: ForwardedHeader) -> Self {
        ClientAddress {
            trusted: trusted_proxies.to_vec(),
            header,
        }
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// The client's address for a request from `peer`.
    pub fn of(&self, headers: &HeaderMap, peer: IpAddr) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return peer;
        }
        let forwarded = forwarded_for(headers, self.header);
        let mut client = peer;
        for hop in forwarded.iter().rev() {
            if !self.trusts(client) {
                break;
            }
            match hop {
                Some(ip) => client = ip.to_canonical(),
                // A hop a trusted proxy wrote but nobody can read: stop at
                // the proxy rather than guess.
                None => break,
            }
        }
        client
    }
}

/// The key a client address is rate-limited by: an IPv4 address, or the
/// /64 network of an IPv6 one.
pub fn rate_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("ip:{v4}"),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("ip:{v4}"),
            None => {
                let net = ipnet::Ipv6Net::new(v6, 64)
                    .expect("64 is a valid prefix")
                    .trunc();
                format!("ip:{net}")
            }
        },
    }
}

/// The addresses of `header` (every instance, in order): `X-Forwarded-For`
/// entries or `Forwarded`'s `for=` parameters; `None` for an entry that is
/// no address.
fn forwarded_for(headers: &HeaderMap, header: ForwardedHeader) -> Vec<Option<IpAddr>> {
    let values = |name| {
        headers
            .get_all(name)
            .iter()
            .flat_map(|v| v.to_str().unwrap_or(",").split(',').map(str::trim))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    if header == ForwardedHeader::XForwardedFor {
        return values("x-forwarded-for")
            .iter()
            .map(|entry| parse_node(entry))
            .collect();
    }
    values("forwarded")
        .iter()
        .filter_map(|element| {
            element.split(';').find_map(|pair| {
                let (key, value) = pair.trim().split_once('=')?;
                key.eq_ignore_ascii_case("for")
                    .then(|| parse_node(value.trim_matches('"')))
            })
        })
        .collect()
}

/// `1.2.3.4`, `1.2.3.4:80`, `::1`, `[::1]` or `[::1]:80`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse() {
        return Some(ip);
    }
    if let Ok(addr) = node.parse::<std::net::SocketAddr>() {
        return Some(addr.ip());
    }
    node.strip_prefix('[')?.split(']').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarding_headers_count_only_from_trusted_proxies() {
        let resolver = ClientAddress::new(
            &["10.0.0.0/8".parse().unwrap()],
            ForwardedHeader::XForwardedFor,
        );
        let spoofed = headers(&[("x-forwarded-for", "1.2.3.4")]);
        assert_eq!(resolver.of(&spoofed, ip("203.0.113.9")), ip("203.0.113.9"));
        assert_eq!(resolver.of(&spoofed, ip("10.0.0.1")), ip("1.2.3.4"));
        // A client's own forged entry sits left of the real one.
        let chain = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.0.0.2")]);
        assert_eq!(resolver.of(&chain, ip("10.0.0.1")), ip("198.51.100.7"));
        // The header the proxies do not write is the client's own.
        let both = headers(&[
            ("forwarded", "for=\"[2001:db8::1]:4711\";proto=https"),
            ("x-forwarded-for", "198.51.100.8"),
        ]);
        assert_eq!(resolver.of(&both, ip("10.0.0.1")), ip("198.51.100.8"));
        let rfc = ClientAddress::new(&["10.0.0.0/8".parse().unwrap()], ForwardedHeader::Forwarded);
        assert_eq!(rfc.of(&both, ip("10.0.0.1")), ip("2001:db8::1"));
        // A dual-stack listener's IPv4 peer is an IPv4 address.
        assert_eq!(resolver.of(&spoofed, ip("::ffff:10.0.0.1")), ip("1.2.3.4"));
        assert_eq!(
            resolver.of(&HeaderMap::new(), ip("::ffff:203.0.113.9")),
            ip("203.0.113.9")
        );
        let garbage = headers(&[("x-forwarded-for", "unknown")]);
        assert_eq!(resolver.of(&garbage, ip("10.0.0.1")), ip("10.0.0.1"));
        assert_eq!(
            resolver.of(&HeaderMap::new(), ip("10.0.0.1")),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64() {
        assert_eq!(rate_key(ip("2001:db8:1:2:3:4:5:6")), "ip:2001:db8:1:2::/64");
        assert_eq!(rate_key(ip("2001:db8:1:2:ffff::1")), "ip:2001:db8:1:2::/64");
        assert_eq!(rate_key(ip("::ffff:192.0.2.1")), "ip:192.0.2.1");
        assert_eq!(rate_key(ip("192.0.2.1")), "ip:192.0.2.1");
    }
}
