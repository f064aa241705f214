//! Route matching with Spin's rules: exact paths, `:name` segments and
//! trailing wildcards (`/api/explore/...`); the most specific route wins.
//! A route may also name the HTTP methods it takes, so `GET` and `POST` of
//! one path can go to different policies: a request skips routes whose
//! methods exclude it, and a path some route matches but none for its
//! method gets 405 with `Allow`.

use std::fmt;

use http::Method;

/// One segment of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// Matches itself only.
    Literal(String),
    /// `:name`: matches any one non-empty segment, passed on by name.
    Param(String),
}

/// A parsed `route = "..."` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePattern {
    segments: Vec<Segment>,
    /// Ends in `/...`: the route also matches everything below it.
    wildcard: bool,
}

/// What a pattern matched in one path.
#[derive(Debug, PartialEq, Eq)]
pub struct PathMatch<'p> {
    /// The part of the path below the route (Spin's `path-info`).
    pub path_info: &'p str,
    /// `:name` segments and what they matched, in order.
    pub params: Vec<(String, &'p str)>,
}

impl RoutePattern {
    /// Parses a route as written in the manifest.
    pub fn parse(route: &str) -> Result<RoutePattern, String> {
        let Some(rest) = route.strip_prefix('/') else {
            return Err(format!("route {route:?} must start with '/'"));
        };
        if route.contains(['?', '#', ' ']) {
            return Err(format!(
                "route {route:?} must be a plain path (no query, fragment or spaces)"
            ));
        }
        let (rest, wildcard) = match rest.strip_suffix("...") {
            Some(prefix) if prefix.is_empty() || prefix.ends_with('/') => {
                (prefix.trim_end_matches('/'), true)
            }
            _ => (rest.trim_end_matches('/'), false),
        };
        let mut segments = Vec::new();
        for part in rest.split('/').filter(|_| !rest.is_empty()) {
            if part.contains("...") {
                return Err(format!(
                    "route {route:?}: '...' is only allowed as a trailing \"/...\""
                ));
            }
            if part.is_empty() {
                return Err(format!("route {route:?} has an empty segment"));
            }
            segments.push(match part.strip_prefix(':') {
                Some(name)
                    if !name.is_empty()
                        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
                {
                    if segments
                        .iter()
                        .any(|s| matches!(s, Segment::Param(n) if n == name))
                    {
                        return Err(format!("route {route:?} names `:{name}` twice"));
                    }
                    Segment::Param(name.to_owned())
                }
                Some(_) => {
                    return Err(format!(
                        "route {route:?}: parameter names use letters, digits and '_'"
                    ));
                }
                None => Segment::Literal(part.to_owned()),
            });
        }
        Ok(RoutePattern { segments, wildcard })
    }

    /// If `path` matches, what it matched.
    pub fn matches<'p>(&self, path: &'p str) -> Option<PathMatch<'p>> {
        let mut rest = path.strip_prefix('/')?;
        let mut params = Vec::new();
        let mut end = 1; // byte offset in `path` past the matched segments
        for segment in &self.segments {
            let (part, after) = rest.split_once('/').unwrap_or((rest, ""));
            match segment {
                Segment::Literal(literal) if literal == part => {}
                Segment::Param(name) if !part.is_empty() => params.push((name.clone(), part)),
                _ => return None,
            }
            end += part.len();
            if rest.len() > part.len() {
                end += 1;
            }
            rest = after;
        }
        if self.wildcard {
            // Below the route: from the `/` after the last matched segment.
            let start = if self.segments.is_empty() {
                0
            } else {
                end - usize::from(path[..end].ends_with('/'))
            };
            let start = start.min(path.len());
            return Some(PathMatch {
                path_info: &path[start..],
                params,
            });
        }
        // Exact: nothing left (a trailing `/` is tolerated: `end` is past it).
        (rest.is_empty() && path.len() == end).then_some(PathMatch {
            path_info: "",
            params,
        })
    }

    /// Ordering key, most specific first: exact routes before wildcards,
    /// then more segments, then literal segments before parameters from
    /// the left.
    fn specificity(&self) -> (bool, usize, Vec<bool>) {
        (
            !self.wildcard,
            self.segments.len(),
            self.segments
                .iter()
                .map(|s| matches!(s, Segment::Literal(_)))
                .collect(),
        )
    }

    /// The route's path without its wildcard (Spin's `component-route`).
    pub fn base(&self) -> String {
        let mut base = String::new();
        for segment in &self.segments {
            base.push('/');
            match segment {
                Segment::Literal(literal) => base.push_str(literal),
                Segment::Param(name) => {
                    base.push(':');
                    base.push_str(name);
                }
            }
        }
        if base.is_empty() && !self.wildcard {
            base.push('/');
        }
        base
    }
}

impl fmt::Display for RoutePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base())?;
        if self.wildcard {
            f.write_str("/...")?;
        }
        Ok(())
    }
}

/// A route table: patterns sorted by specificity, each with the methods it
/// takes (none listed: all) and its payload.
#[derive(Debug, Clone)]
pub struct Router<T> {
    routes: Vec<(RoutePattern, Vec<Method>, T)>,
}

/// The outcome of routing one request.
#[derive(Debug)]
pub enum Routed<'r, 'p, T> {
    /// The most specific route for the path that takes the method.
    Found(RouteMatch<'r, 'p, T>),
    /// Routes match the path, but none takes the method: these do.
    MethodNotAllowed(Vec<Method>),
    /// No route matches the path.
    NotFound,
}

/// A route that matched one request.
#[derive(Debug)]
pub struct RouteMatch<'r, 'p, T> {
    /// The route that matched.
    pub pattern: &'r RoutePattern,
    /// What the route carries (the component and its policy).
    pub target: &'r T,
    /// The request path below the matched route, and its `:name` segments.
    pub path: PathMatch<'p>,
}

impl<T> Router<T> {
    /// Builds the table; order of `routes` does not matter.
    pub fn new(routes: impl IntoIterator<Item = (RoutePattern, Vec<Method>, T)>) -> Self {
        let mut routes: Vec<_> = routes.into_iter().collect();
        routes.sort_by_key(|(pattern, _, _)| std::cmp::Reverse(pattern.specificity()));
        Router { routes }
    }

    /// All routes with their methods, most specific first.
    pub fn entries(&self) -> impl Iterator<Item = (&RoutePattern, &[Method], &T)> {
        self.routes
            .iter()
            .map(|(pattern, methods, target)| (pattern, methods.as_slice(), target))
    }

    /// Finds the most specific route for `path` that takes `method`.
    pub fn route<'r, 'p>(&'r self, method: &Method, path: &'p str) -> Routed<'r, 'p, T> {
        let mut allowed: Option<Vec<Method>> = None;
        for (pattern, methods, target) in &self.routes {
            let Some(matched) = pattern.matches(path) else {
                continue;
            };
            if methods.is_empty() || methods.contains(method) {
                return Routed::Found(RouteMatch {
                    pattern,
                    target,
                    path: matched,
                });
            }
            let allow = allowed.get_or_insert_with(Vec::new);
            for method in methods {
                if !allow.contains(method) {
                    allow.push(method.clone());
                }
            }
        }
        match allowed {
            Some(allow) => Routed::MethodNotAllowed(allow),
            None => Routed::NotFound,
        }
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
                ("/api/items/:id", "item"),
                ("/api/items/:id/notes/...", "notes"),
                ("/api/items/new", "new-item"),
            ]
            .map(|(r, t)| (RoutePattern::parse(r).unwrap(), vec![], t)),
        )
    }

    fn hit(r: &Router<&'static str>, path: &str) -> (&'static str, String) {
        match r.route(&Method::GET, path) {
            Routed::Found(m) => (*m.target, m.path.path_info.to_owned()),
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn most_specific_wins() {
        let r = router();
        assert_eq!(hit(&r, "/api/explore/models"), ("models", "".into()));
        assert_eq!(hit(&r, "/api/explore/models/"), ("models", "".into()));
        assert_eq!(
            hit(&r, "/api/explore/models/x"),
            ("explore", "/models/x".into())
        );
        assert_eq!(hit(&r, "/api/explore"), ("explore", "".into()));
        assert_eq!(hit(&r, "/api/explore/"), ("explore", "/".into()));
        assert_eq!(hit(&r, "/api/explorer"), ("api", "/explorer".into()));
        assert_eq!(hit(&r, "/other"), ("fallback", "/other".into()));
        assert_eq!(hit(&r, "/"), ("fallback", "/".into()));
    }

    #[test]
    fn parameters_match_one_segment_and_literals_win() {
        let r = router();
        assert_eq!(hit(&r, "/api/items/new").0, "new-item");
        let Routed::Found(m) = r.route(&Method::GET, "/api/items/42") else {
            panic!()
        };
        assert_eq!(
            (*m.target, m.path.params.clone()),
            ("item", vec![("id".to_owned(), "42")])
        );
        let Routed::Found(m) = r.route(&Method::GET, "/api/items/42/notes/7") else {
            panic!()
        };
        assert_eq!(*m.target, "notes");
        assert_eq!(m.path.path_info, "/7");
        assert_eq!(m.path.params, vec![("id".to_owned(), "42")]);
        // An empty segment is no parameter.
        assert_eq!(hit(&r, "/api/items//notes").0, "api");
        assert_eq!(hit(&r, "/api/items/42/other").0, "api");
    }

    #[test]
    fn methods_select_a_route_or_answer_405() {
        let r = Router::new([
            (
                RoutePattern::parse("/a").unwrap(),
                vec![Method::GET],
                "read",
            ),
            (
                RoutePattern::parse("/a").unwrap(),
                vec![Method::POST],
                "write",
            ),
            (RoutePattern::parse("/b/...").unwrap(), vec![], "any"),
            (
                RoutePattern::parse("/b/x").unwrap(),
                vec![Method::PATCH],
                "patch-x",
            ),
        ]);
        let target = |m: Method, p: &str| match r.route(&m, p) {
            Routed::Found(found) => *found.target,
            Routed::MethodNotAllowed(_) => "405",
            Routed::NotFound => "404",
        };
        assert_eq!(target(Method::GET, "/a"), "read");
        assert_eq!(target(Method::POST, "/a"), "write");
        assert_eq!(target(Method::PATCH, "/b/x"), "patch-x");
        // A less specific route that takes the method still serves it.
        assert_eq!(target(Method::GET, "/b/x"), "any");
        assert_eq!(target(Method::GET, "/c"), "404");
        let Routed::MethodNotAllowed(allow) = r.route(&Method::DELETE, "/a") else {
            panic!()
        };
        assert_eq!(allow, vec![Method::GET, Method::POST]);
    }

    #[test]
    fn no_match_without_fallback() {
        let r = Router::new([(RoutePattern::parse("/a").unwrap(), vec![], ())]);
        assert!(matches!(r.route(&Method::GET, "/b"), Routed::NotFound));
        assert!(matches!(r.route(&Method::GET, "/a/b"), Routed::NotFound));
        assert!(matches!(r.route(&Method::GET, "/a"), Routed::Found(_)));
    }

    #[test]
    fn rejects_malformed_routes() {
        assert!(RoutePattern::parse("api").is_err());
        assert!(RoutePattern::parse("/a/.../b").is_err());
        assert!(RoutePattern::parse("/a...").is_err());
        assert!(RoutePattern::parse("/a//b").is_err());
        assert!(RoutePattern::parse("/a/:").is_err());
        assert!(RoutePattern::parse("/a/:x-y").is_err());
        assert!(RoutePattern::parse("/a/:x/:x").is_err());
        assert_eq!(RoutePattern::parse("/...").unwrap().to_string(), "/...");
        assert_eq!(RoutePattern::parse("/a/").unwrap().to_string(), "/a");
        assert_eq!(RoutePattern::parse("/").unwrap().to_string(), "/");
        assert_eq!(
            RoutePattern::parse("/a/:id/...").unwrap().to_string(),
            "/a/:id/..."
        );
    }
}
