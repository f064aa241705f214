//! The embedded files and how one is chosen for a request: by path (client
//! routes fall back to `index.html`), then by the encodings the client takes.

/// One file of the built app, with its pre-compressed bodies.
pub struct Asset {
    /// The URL path, e.g. `/assets/index-3f2a1b.js`.
    pub path: &'static str,
    pub content_type: &'static str,
    /// Hex prefix of the file's SHA-256: the same bytes, the same tag.
    pub etag: &'static str,
    pub identity: &'static [u8],
    pub gzip: Option<&'static [u8]>,
    pub brotli: Option<&'static [u8]>,
}

/// Every file `build.rs` embedded, sorted by path.
static ASSETS: &[Asset] = include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// A body's content coding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
    Brotli,
}

impl Encoding {
    /// The `Content-Encoding` value, none for identity.
    pub fn header(self) -> Option<&'static str> {
        match self {
            Encoding::Identity => None,
            Encoding::Gzip => Some("gzip"),
            Encoding::Brotli => Some("br"),
        }
    }
}

/// The file for a request path: the file itself, or for a client route (a
/// path whose last segment has no extension) the app's `index.html`.
/// Missing files that look like files (`/assets/x.js`, `/robots.txt`) are
/// not found, so a stale script tag fails loudly instead of parsing HTML.
pub fn find(path: &str) -> Option<&'static Asset> {
    let lookup = |p: &str| {
        ASSETS
            .binary_search_by(|a| a.path.cmp(p))
            .ok()
            .map(|i| &ASSETS[i])
    };
    if let Some(asset) = lookup(path) {
        return Some(asset);
    }
    if path.starts_with("/assets/") || looks_like_a_file(path) {
        return None;
    }
    lookup("/index.html")
}

/// A path ending in a static file's extension. Other dots are the app's:
/// model names such as `/explore/qwen2.5:0.5b` are client routes.
fn looks_like_a_file(path: &str) -> bool {
    const EXTENSIONS: [&str; 14] = [
        "js",
        "mjs",
        "css",
        "map",
        "json",
        "html",
        "txt",
        "xml",
        "svg",
        "png",
        "ico",
        "webmanifest",
        "woff2",
        "wasm",
    ];
    let last = path.rsplit('/').next().unwrap_or("");
    last.rsplit_once('.')
        .is_some_and(|(_, ext)| EXTENSIONS.iter().any(|e| ext.eq_ignore_ascii_case(e)))
}

/// Whether `If-None-Match` names this tag (or is `*`).
pub fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    if_none_match
        .split(',')
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == "*" || tag == etag)
}

/// Whether `Accept-Encoding` takes `coding`: its own entry decides, else
/// `*`; `q=0` refuses.
fn accepts(header: &str, coding: &str) -> bool {
    let mut wildcard = None;
    for item in header.split(',') {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or("").trim();
        let allowed = !parts.any(|p| {
            p.trim()
                .strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        if name.eq_ignore_ascii_case(coding) {
            return allowed;
        }
        if name == "*" {
            wildcard = Some(allowed);
        }
    }
    wildcard.unwrap_or(false)
}

impl Asset {
    /// Vite's content-hashed output: safe to cache for a year.
    pub fn is_hashed(&self) -> bool {
        self.path.starts_with("/assets/")
    }

    /// The best encoding this file has that `Accept-Encoding` allows.
    pub fn encoding_for(&self, accept_encoding: Option<&str>) -> Encoding {
        let accepts = |name: &str| accept_encoding.is_some_and(|header| accepts(header, name));
        if self.brotli.is_some() && accepts("br") {
            Encoding::Brotli
        } else if self.gzip.is_some() && accepts("gzip") {
            Encoding::Gzip
        } else {
            Encoding::Identity
        }
    }

    /// The quoted strong ETag of one representation (each encoding its own).
    pub fn etag_header(&self, encoding: Encoding) -> String {
        match encoding.header() {
            Some(coding) => format!("\"{}-{coding}\"", self.etag),
            None => format!("\"{}\"", self.etag),
        }
    }

    /// The body in `encoding` (which `encoding_for` chose from those present).
    pub fn body(&self, encoding: Encoding) -> &'static [u8] {
        match encoding {
            Encoding::Brotli => self.brotli.unwrap_or(self.identity),
            Encoding::Gzip => self.gzip.unwrap_or(self.identity),
            Encoding::Identity => self.identity,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asset() -> Asset {
        Asset {
            path: "/assets/a-1.js",
            content_type: "text/javascript",
            etag: "abc",
            identity: b"identity",
            gzip: Some(b"gz"),
            brotli: Some(b"br"),
        }
    }

    #[test]
    fn encodings_follow_accept_encoding() {
        let a = asset();
        assert_eq!(a.encoding_for(Some("gzip, deflate, br")), Encoding::Brotli);
        assert_eq!(a.encoding_for(Some("gzip")), Encoding::Gzip);
        assert_eq!(a.encoding_for(Some("br;q=0, gzip")), Encoding::Gzip);
        assert_eq!(a.encoding_for(Some("identity")), Encoding::Identity);
        assert_eq!(a.encoding_for(Some("br;q=0, *")), Encoding::Gzip);
        assert_eq!(a.encoding_for(Some("*")), Encoding::Brotli);
        assert_eq!(a.encoding_for(None), Encoding::Identity);
        assert_eq!(a.etag_header(Encoding::Brotli), "\"abc-br\"");
    }

    #[test]
    fn etags_match_lists_and_weak_tags() {
        assert!(etag_matches("\"x\", W/\"abc-br\"", "\"abc-br\""));
        assert!(etag_matches("*", "\"abc\""));
        assert!(!etag_matches("\"abc\"", "\"abc-br\""));
    }

    #[test]
    fn client_routes_get_the_app_and_missing_files_do_not() {
        assert_eq!(find("/").unwrap().path, "/index.html");
        assert_eq!(find("/c/123").unwrap().path, "/index.html");
        assert_eq!(find("/reset-password").unwrap().path, "/index.html");
        assert!(find("/assets/gone-123.js").is_none());
        assert!(find("/robots.txt").is_none());
        assert_eq!(find("/explore/qwen2.5:0.5b").unwrap().path, "/index.html");
    }
}
