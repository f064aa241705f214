//! Route matching with Spin's rules: exact paths and trailing wildcards
//! (`/api/explore/...`), the most specific route wins.

use std::fmt;

/// A parsed `route = "..."` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoutePattern {
    /// `/api/about`: this path only (a trailing `/` on the request is tolerated).
    Exact(String),
    /// `/api/explore/...`: the prefix itself and everything below it. The
    /// stored prefix has no trailing slash (`/...` stores the empty string).
    Prefix(String),
}

impl RoutePattern {
    /// Parses a route as written in the manifest.
    pub fn parse(route: &str) -> Result<RoutePattern, String> {
        if !route.starts_with('/') {
            return Err(format!("route {route:?} must start with '/'"));
        }
        if route.contains(['?', '#', ' ']) {
            return Err(format!(
                "route {route:?} must be a plain path (no query, fragment or spaces)"
            ));
        }
        if let Some(prefix) = route.strip_suffix("/...") {
            if prefix.contains("...") {
                return Err(format!(
                    "route {route:?}: '...' is only allowed as the last segment"
                ));
            }
            return Ok(RoutePattern::Prefix(prefix.to_owned()));
        }
        if route.contains("...") {
            return Err(format!(
                "route {route:?}: '...' is only allowed as a trailing \"/...\""
            ));
        }
        let exact = route.trim_end_matches('/');
        Ok(RoutePattern::Exact(if exact.is_empty() {
            "/".into()
        } else {
            exact.into()
        }))
    }

    /// If `path` matches, the part of it below the route (Spin's `path-info`).
    pub fn path_info<'p>(&self, path: &'p str) -> Option<&'p str> {
        match self {
            RoutePattern::Exact(exact) => {
                let trimmed = if path.len() > 1 {
                    path.strip_suffix('/').unwrap_or(path)
                } else {
                    path
                };
                (trimmed == exact).then_some("")
            }
            RoutePattern::Prefix(prefix) => {
                let rest = path.strip_prefix(prefix.as_str())?;
                (rest.is_empty() || rest.starts_with('/')).then_some(rest)
            }
        }
    }

    /// Ordering key: exact routes first, then longer prefixes before shorter.
    fn specificity(&self) -> (u8, usize) {
        match self {
            RoutePattern::Exact(p) => (1, p.len()),
            RoutePattern::Prefix(p) => (0, p.len()),
        }
    }
}

impl fmt::Display for RoutePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RoutePattern::Exact(p) => f.write_str(p),
            RoutePattern::Prefix(p) => write!(f, "{p}/..."),
        }
    }
}

/// A route table: patterns sorted by specificity, each with its payload.
#[derive(Debug, Clone)]
pub struct Router<T> {
    routes: Vec<(RoutePattern, T)>,
}

/// The outcome of routing one request path.
#[derive(Debug)]
pub struct RouteMatch<'r, 'p, T> {
    /// The route that matched.
    pub pattern: &'r RoutePattern,
    /// What the route carries (the component and its policy).
    pub target: &'r T,
    /// The request path below the matched route.
    pub path_info: &'p str,
}

impl<T> Router<T> {
    /// Builds the table; order of `routes` does not matter.
    pub fn new(routes: impl IntoIterator<Item = (RoutePattern, T)>) -> Self {
        let mut routes: Vec<_> = routes.into_iter().collect();
        routes.sort_by_key(|(pattern, _)| std::cmp::Reverse(pattern.specificity()));
        Router { routes }
    }

    /// All routes, most specific first.
    pub fn entries(&self) -> impl Iterator<Item = (&RoutePattern, &T)> {
        self.routes
            .iter()
            .map(|(pattern, target)| (pattern, target))
    }

    /// Finds the most specific route for `path`.
    pub fn route<'r, 'p>(&'r self, path: &'p str) -> Option<RouteMatch<'r, 'p, T>> {
        self.routes.iter().find_map(|(pattern, target)| {
            pattern.path_info(path).map(|path_info| RouteMatch {
                pattern,
                target,
                path_info,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router<&'static str> {
        Router::new(
            [
                ("/...", "fallback"),
                ("/api/...", "api"),
                ("/api/explore/...", "explore"),
                ("/api/explore/models", "models"),
            ]
            .map(|(r, t)| (RoutePattern::parse(r).unwrap(), t)),
        )
    }

    #[test]
    fn most_specific_wins() {
        let r = router();
        let hit = |p| {
            let m = r.route(p).unwrap();
            (*m.target, m.path_info.to_owned())
        };
        assert_eq!(hit("/api/explore/models"), ("models", "".into()));
        assert_eq!(hit("/api/explore/models/"), ("models", "".into()));
        assert_eq!(
            hit("/api/explore/models/x"),
            ("explore", "/models/x".into())
        );
        assert_eq!(hit("/api/explore"), ("explore", "".into()));
        assert_eq!(hit("/api/explorer"), ("api", "/explorer".into()));
        assert_eq!(hit("/other"), ("fallback", "/other".into()));
        assert_eq!(hit("/"), ("fallback", "/".into()));
    }

    #[test]
    fn no_match_without_fallback() {
        let r = Router::new([(RoutePattern::parse("/a").unwrap(), ())]);
        assert!(r.route("/b").is_none());
        assert!(r.route("/a/b").is_none());
        assert!(r.route("/a").is_some());
    }

    #[test]
    fn rejects_malformed_routes() {
        assert!(RoutePattern::parse("api").is_err());
        assert!(RoutePattern::parse("/a/.../b").is_err());
        assert!(RoutePattern::parse("/a...").is_err());
        assert_eq!(
            RoutePattern::parse("/...").unwrap(),
            RoutePattern::Prefix(String::new())
        );
        assert_eq!(
            RoutePattern::parse("/a/").unwrap(),
            RoutePattern::Exact("/a".into())
        );
    }
}
