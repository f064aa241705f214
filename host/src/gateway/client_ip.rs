//! Who the client is, for per-address rate limits and the audit log.
//!
//! The peer of the TCP connection is the client unless it is one of the
//! proxies runtime-config trusts (`[http] trusted_proxies`, CIDRs): only
//! then are `X-Forwarded-For` (or, without it, `Forwarded: for=`) read,
//! right to left, skipping trusted proxies, and the first address that is
//! not one is the client. A header from any other peer is ignored, so a
//! client cannot pick the address it is limited by.
//!
//! An IPv6 client is limited by its /64: one subscriber usually holds a
//! whole /64 and could otherwise rotate through 2^64 addresses.

use std::net::IpAddr;

use http::HeaderMap;
use ipnet::IpNet;

/// How the client address is found.
#[derive(Debug, Clone, Default)]
pub struct ClientAddress {
    trusted: Vec<IpNet>,
}

impl ClientAddress {
    /// Believes forwarding headers from peers in `trusted_proxies` only.
    pub fn new(trusted_proxies: &[IpNet]) -> Self {
        ClientAddress {
            trusted: trusted_proxies.to_vec(),
        }
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// The client's address for a request from `peer`.
    pub fn of(&self, headers: &HeaderMap, peer: IpAddr) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let forwarded = forwarded_for(headers);
        let mut client = peer;
        for hop in forwarded.iter().rev() {
            if !self.trusts(client) {
                break;
            }
            match hop {
                Some(ip) => client = *ip,
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

/// The addresses of `X-Forwarded-For` (every instance, in order), else of
/// `Forwarded`'s `for=` parameters; `None` for an entry that is no address.
fn forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let values = |name| {
        headers
            .get_all(name)
            .iter()
            .flat_map(|v| v.to_str().unwrap_or(",").split(',').map(str::trim))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let xff = values("x-forwarded-for");
    if !xff.is_empty() {
        return xff.iter().map(|entry| parse_node(entry)).collect();
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
        let resolver = ClientAddress::new(&["10.0.0.0/8".parse().unwrap()]);
        let spoofed = headers(&[("x-forwarded-for", "1.2.3.4")]);
        assert_eq!(resolver.of(&spoofed, ip("203.0.113.9")), ip("203.0.113.9"));
        assert_eq!(resolver.of(&spoofed, ip("10.0.0.1")), ip("1.2.3.4"));
        // A client's own forged entry sits left of the real one.
        let chain = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.0.0.2")]);
        assert_eq!(resolver.of(&chain, ip("10.0.0.1")), ip("198.51.100.7"));
        let forwarded = headers(&[("forwarded", "for=\"[2001:db8::1]:4711\";proto=https")]);
        assert_eq!(resolver.of(&forwarded, ip("10.0.0.1")), ip("2001:db8::1"));
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
