//! Embeds the web app Vite built (`app/dist`, made by `cargo xtask build`)
//! into the component: every file with its content type, a strong ETag,
//! and gzip and brotli bodies compressed once here rather than per request.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let dist = manifest_dir.join("app/dist");
    println!("cargo:rerun-if-changed={}", dist.display());
    if !dist.join("index.html").is_file() {
        panic!(
            "{} has no index.html: the web app is built with npm first \
             (`cargo xtask build` does it; by hand: `cd components/web/app && npm ci && npm run build`)",
            dist.display()
        );
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    let mut files = Vec::new();
    collect(&dist, &mut files);
    // URL paths, sorted as strings: the component binary-searches them.
    let mut files: Vec<(String, PathBuf)> = files
        .into_iter()
        .map(|file| {
            let relative = file
                .strip_prefix(&dist)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            (format!("/{relative}"), file)
        })
        .collect();
    files.sort();

    let mut table = String::from("&[\n");
    for (index, (path, file)) in files.iter().enumerate() {
        let bytes = std::fs::read(file).unwrap();
        let digest = Sha256::digest(&bytes);
        let etag: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
        let content_type = content_type(path);
        let compressible = content_type.starts_with("text/")
            || content_type.contains("javascript")
            || content_type.contains("json")
            || content_type.contains("svg");
        let (gzip, brotli) = if compressible {
            (
                smaller(&out, index, "gz", gzip(&bytes), bytes.len()),
                smaller(&out, index, "br", brotli(&bytes), bytes.len()),
            )
        } else {
            (None, None)
        };
        let embed = |p: &Option<PathBuf>| match p {
            Some(p) => format!("Some(include_bytes!({:?}))", p.display().to_string()),
            None => "None".to_owned(),
        };
        writeln!(
            table,
            "    Asset {{ path: {path:?}, content_type: {content_type:?}, etag: {etag:?}, \
             identity: include_bytes!({:?}), gzip: {}, brotli: {} }},",
            file.display().to_string(),
            embed(&gzip),
            embed(&brotli),
        )
        .unwrap();
    }
    table.push(']');
    std::fs::write(out.join("assets.rs"), table).unwrap();
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, files);
        } else {
            files.push(path);
        }
    }
}

/// Keeps a compressed body only when it saves something.
fn smaller(out: &Path, index: usize, ext: &str, body: Vec<u8>, original: usize) -> Option<PathBuf> {
    (body.len() < original).then(|| {
        let path = out.join(format!("{index}.{ext}"));
        std::fs::write(&path, body).unwrap();
        path
    })
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn brotli(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let params = brotli::enc::BrotliEncoderParams {
        quality: 11,
        ..Default::default()
    };
    brotli::BrotliCompress(&mut &bytes[..], &mut out, &params).unwrap();
    out
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}
