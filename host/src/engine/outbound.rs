//! Outbound HTTP policy: a component may only call the destinations its
//! `allowed_outbound_hosts` grants. Everything else is refused with
//! `HttpRequestDenied`, which the guest sees as an error, never a success.

use std::sync::Arc;

use http::uri::Scheme;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

/// One `scheme://host[:port]` grant; `*` is a wildcard in any part and
/// `*.example.com` matches subdomains.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HostPattern {
    scheme: Option<String>,
    host: String,
    port: Option<u16>,
}

/// The parsed `allowed_outbound_hosts` of one component.
#[derive(Debug, Clone, Default)]
pub struct AllowedHosts(Vec<HostPattern>);

impl AllowedHosts {
    /// Parses the manifest's grants; errors name the offending entry.
    pub fn parse(grants: &[String]) -> Result<AllowedHosts, String> {
        grants
            .iter()
            .map(|g| HostPattern::parse(g))
            .collect::<Result<_, _>>()
            .map(AllowedHosts)
    }

    /// Whether a request to `scheme://host:port` is granted.
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        self.0.iter().any(|p| p.matches(scheme, host, port))
    }
}

impl HostPattern {
    fn parse(grant: &str) -> Result<HostPattern, String> {
        let (scheme, rest) = grant.split_once("://").ok_or_else(|| {
            format!("{grant:?}: expected scheme://host[:port], e.g. \"https://api.example.com\"")
        })?;
        let scheme = match scheme {
            "*" => None,
            "http" | "https" => Some(scheme.to_owned()),
            other => {
                return Err(format!(
                    "{grant:?}: unsupported scheme {other:?} (http, https or *)"
                ));
            }
        };
        let rest = rest.trim_end_matches('/');
        if rest.contains('/') {
            return Err(format!("{grant:?}: a grant names a host, not a path"));
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, "*")) => (host, None),
            Some((host, port)) => (
                host,
                Some(
                    port.parse::<u16>()
                        .map_err(|_| format!("{grant:?}: invalid port {port:?}"))?,
                ),
            ),
            None => {
                let default = match scheme.as_deref() {
                    Some("http") => Some(80),
                    Some("https") => Some(443),
                    _ => None,
                };
                (rest, default)
            }
        };
        if host.is_empty() || (host.contains('*') && host != "*" && !host.starts_with("*.")) {
            return Err(format!("{grant:?}: invalid host {host:?}"));
        }
        Ok(HostPattern {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    fn matches(&self, scheme: &str, host: &str, port: u16) -> bool {
        let host = host.to_ascii_lowercase();
        self.scheme.as_deref().is_none_or(|s| s == scheme)
            && self.port.is_none_or(|p| p == port)
            && match self.host.strip_prefix("*.") {
                _ if self.host == "*" => true,
                Some(domain) => host.ends_with(&format!(".{domain}")),
                None => self.host == host,
            }
    }
}

/// `wasi:http` hooks of one instance: enforces [`AllowedHosts`] before any
/// outgoing request leaves the host.
pub struct OutboundHooks {
    allowed: Arc<AllowedHosts>,
}

impl OutboundHooks {
    /// Hooks enforcing `allowed`.
    pub fn new(allowed: Arc<AllowedHosts>) -> Self {
        OutboundHooks { allowed }
    }
}

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), Error>> + Send>,
                ),
                Error,
            >,
        > + Send,
>;

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> SendFuture {
        let uri = request.uri();
        let scheme = uri.scheme().unwrap_or(&Scheme::HTTPS).as_str().to_owned();
        let host = uri.host().unwrap_or_default();
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "http" { 80 } else { 443 });
        if !self.allowed.allows(&scheme, host, port) {
            tracing::warn!(%scheme, host, port, "outbound request denied: not in allowed_outbound_hosts");
            return Box::new(async { Err(Error::HttpRequestDenied) });
        }
        Box::new(async move {
            use http_body_util::BodyExt;
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::AllowedHosts;

    fn grants(g: &[&str]) -> AllowedHosts {
        AllowedHosts::parse(&g.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn default_denies_everything() {
        assert!(!AllowedHosts::default().allows("https", "example.com", 443));
    }

    #[test]
    fn matches_scheme_host_and_port() {
        let g = grants(&[
            "https://api.example.com",
            "http://127.0.0.1:*",
            "*://*.internal:8080",
        ]);
        assert!(g.allows("https", "api.example.com", 443));
        assert!(!g.allows("http", "api.example.com", 80));
        assert!(!g.allows("https", "api.example.com", 8443));
        assert!(g.allows("http", "127.0.0.1", 3000));
        assert!(g.allows("https", "db.internal", 8080));
        assert!(!g.allows("https", "internal", 8080));
        assert!(!g.allows("https", "evil-api.example.com", 443));
    }

    #[test]
    fn rejects_malformed_grants() {
        for bad in [
            "example.com",
            "ftp://x",
            "https://x/path",
            "https://x:http",
            "https://a*b",
        ] {
            assert!(AllowedHosts::parse(&[bad.to_string()]).is_err(), "{bad}");
        }
    }
}
