//! Routing inside a component: method and path pattern → handler, on
//! `matchit` (`/api-keys/{id}`: a named segment; `/{*rest}`: the rest).
//! A path some route has but not for the request's method is a 405 that
//! lists the methods it takes, so components stop repeating their route
//! lists by hand.

use std::collections::BTreeMap;

use crate::api::ApiError;

/// Handlers by path pattern and method.
pub struct Router<H> {
    paths: matchit::Router<Vec<(&'static str, H)>>,
}

/// The named segments a path matched, by name.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// The segment named `name`, if the pattern has it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Why no handler was found.
#[derive(Debug, PartialEq, Eq)]
pub enum Miss {
    /// No route has the path.
    NotFound,
    /// Routes have the path, for these methods only.
    MethodNotAllowed(Vec<&'static str>),
}

impl Miss {
    /// As problem+json: 404, or 405 with `Allow`.
    pub fn to_api_error(&self, method: &str, path: &str) -> ApiError {
        match self {
            Miss::NotFound => ApiError::not_found(format!("no endpoint {path}")),
            Miss::MethodNotAllowed(allow) => ApiError::new(
                405,
                "method not allowed",
                format!("{method} is not supported on {path}"),
            )
            .header("allow", allow.join(", ")),
        }
    }
}

impl<H> Router<H> {
    /// A router over `(method, path pattern, handler)` routes. Panics on a
    /// malformed or conflicting pattern, or a method given twice for one
    /// pattern: the component's own table is wrong.
    pub fn new(routes: impl IntoIterator<Item = (&'static str, &'static str, H)>) -> Self {
        let mut by_path: BTreeMap<&'static str, Vec<(&'static str, H)>> = BTreeMap::new();
        for (method, path, handler) in routes {
            let methods = by_path.entry(path).or_default();
            assert!(
                methods.iter().all(|(m, _)| *m != method),
                "{method} {path} is routed twice"
            );
            methods.push((method, handler));
        }
        let mut paths = matchit::Router::new();
        for (path, methods) in by_path {
            if let Err(e) = paths.insert(path, methods) {
                panic!("route {path}: {e}");
            }
        }
        Router { paths }
    }

    /// The handler for `method` on `path`, and the segments it matched.
    pub fn find(&self, method: &str, path: &str) -> Result<(&H, Params), Miss> {
        let matched = self.paths.at(path).map_err(|_| Miss::NotFound)?;
        let params = Params(
            matched
                .params
                .iter()
                .map(|(key, value)| (key.to_owned(), value.to_owned()))
                .collect(),
        );
        match matched.value.iter().find(|(m, _)| *m == method) {
            Some((_, handler)) => Ok((handler, params)),
            None => Err(Miss::MethodNotAllowed(
                matched.value.iter().map(|(m, _)| *m).collect(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router<&'static str> {
        Router::new([
            ("GET", "/keys", "list"),
            ("POST", "/keys", "create"),
            ("DELETE", "/keys/{id}", "revoke"),
            ("GET", "/keys/mine", "mine"),
        ])
    }

    #[test]
    fn finds_by_method_and_path_with_parameters() {
        let r = router();
        assert_eq!(r.find("GET", "/keys").unwrap().0, &"list");
        assert_eq!(r.find("POST", "/keys").unwrap().0, &"create");
        let (handler, params) = r.find("DELETE", "/keys/k1").unwrap();
        assert_eq!((*handler, params.get("id")), ("revoke", Some("k1")));
        assert_eq!(r.find("GET", "/keys/mine").unwrap().0, &"mine");
        assert_eq!(r.find("GET", "/nothing").unwrap_err(), Miss::NotFound);
        assert_eq!(
            r.find("PUT", "/keys").unwrap_err(),
            Miss::MethodNotAllowed(vec!["GET", "POST"])
        );
        let error = r
            .find("PUT", "/keys")
            .unwrap_err()
            .to_api_error("PUT", "/keys");
        assert_eq!(error.status, 405);
        assert_eq!(
            error.headers,
            vec![("allow".to_owned(), "GET, POST".to_owned())]
        );
    }

    #[test]
    #[should_panic(expected = "routed twice")]
    fn a_method_routed_twice_is_a_bug() {
        Router::new([("GET", "/a", 1), ("GET", "/a", 2)]);
    }
}
