//! The web app's front end: `npm ci` and the Vite build into
//! `components/web/app/dist` (which the `web` component embeds when it
//! compiles), and the Chromium the browser tests drive.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use crate::{Result, apt_install, root, run};

/// Where the browser tests find Chromium (Debian's `chromium` package).
pub const CHROMIUM: &str = "/usr/bin/chromium";

fn app_dir() -> PathBuf {
    root().join("components/web/app")
}

/// Installs the npm packages when the lock file changed, and rebuilds the
/// app when any of its sources is newer than the last build.
pub fn build() -> Result {
    ensure_node()?;
    let app = app_dir();
    let installed = app.join("node_modules/.package-lock.json");
    if newest(&[app.join("package-lock.json"), app.join("package.json")]) > modified(&installed) {
        let mut ci = npm();
        ci.args(["ci", "--no-audit", "--no-fund"]);
        run(ci)?;
    }
    let inputs = [
        app.join("src"),
        app.join("public"),
        app.join("index.html"),
        app.join("vite.config.ts"),
        app.join("tsconfig.json"),
        installed,
    ];
    if newest(&inputs) > modified(&app.join("dist/index.html")) {
        let mut build = npm();
        build.args(["run", "build"]);
        run(build)?;
    }
    Ok(())
}

/// Installs Debian's Chromium for the browser tests when it is missing.
pub fn ensure_browser() -> Result {
    if Path::new(CHROMIUM).exists() {
        return Ok(());
    }
    eprintln!("xtask: installing chromium (the web app's browser tests)");
    apt_install(&["chromium"])
}

/// Node.js ≥ 20.19 (what Vite 7 needs) with npm; apt's when there is none.
fn ensure_node() -> Result {
    if node_version().is_none() {
        eprintln!("xtask: installing Node.js and npm (the web app's build)");
        apt_install(&["nodejs", "npm"])?;
    }
    match node_version() {
        Some(version) if version >= (20, 19) => Ok(()),
        Some((major, minor)) => Err(format!(
            "the web app's build (Vite 7) needs Node.js 20.19 or newer; this machine has {major}.{minor}"
        )),
        None => Err("Node.js and npm are needed to build the web app".into()),
    }
}

/// `node --version` as (major, minor), if node and npm both run.
fn node_version() -> Option<(u32, u32)> {
    let npm = Command::new("npm").arg("--version").output().ok()?;
    let node = Command::new("node").arg("--version").output().ok()?;
    if !npm.status.success() || !node.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&node.stdout);
    let mut parts = text.trim().trim_start_matches('v').split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

fn npm() -> Command {
    let mut command = Command::new("npm");
    command.current_dir(app_dir());
    command
}

fn modified(path: &Path) -> SystemTime {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// The newest modification time among `paths` and everything below them.
fn newest(paths: &[PathBuf]) -> SystemTime {
    let mut newest = SystemTime::UNIX_EPOCH;
    let mut stack: Vec<PathBuf> = paths.to_vec();
    while let Some(path) = stack.pop() {
        newest = newest.max(modified(&path));
        if let Ok(entries) = std::fs::read_dir(&path) {
            stack.extend(entries.flatten().map(|e| e.path()));
        }
    }
    newest
}
