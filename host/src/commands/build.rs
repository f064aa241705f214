//! `lamina build`: run each component's `[component.<id>.build] command`.
//!
//! Builds are the bottleneck on small machines, so every
//! `cargo build ... -p <crate>` command that differs only in its package is
//! merged into one cargo invocation (one dependency graph, one lock, one
//! link step per crate); any other command runs as written, through `sh -c`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};

use crate::manifest::Manifest;

/// One command to run, possibly merged from several components.
#[derive(Debug, PartialEq, Eq)]
pub struct BuildStep {
    /// Working directory.
    pub workdir: PathBuf,
    /// Shell command line.
    pub command: String,
    /// Components this step builds.
    pub components: Vec<String>,
}

/// Plans the build of `only` (or all components with a build section).
pub fn plan(manifest: &Manifest, only: &[String]) -> anyhow::Result<Vec<BuildStep>> {
    for id in only {
        if !manifest.components.contains_key(id) {
            bail!("{}: no component `{id}`", manifest.path.display());
        }
    }
    // Cargo commands keyed by (workdir, command without its -p flags).
    let mut cargo: BTreeMap<(PathBuf, String), (Vec<String>, Vec<String>)> = BTreeMap::new();
    let mut steps = Vec::new();
    for (id, component) in &manifest.components {
        if !only.is_empty() && !only.contains(id) {
            continue;
        }
        let Some(build) = &component.build else {
            continue;
        };
        let workdir = manifest.dir.join(build.workdir.clone().unwrap_or_default());
        match split_cargo_packages(&build.command) {
            Some((rest, packages)) => {
                let entry = cargo.entry((workdir, rest)).or_default();
                entry.0.extend(packages);
                entry.1.push(id.clone());
            }
            None => steps.push(BuildStep {
                workdir,
                command: build.command.clone(),
                components: vec![id.clone()],
            }),
        }
    }
    let merged = cargo
        .into_iter()
        .map(|((workdir, rest), (mut packages, components))| {
            packages.sort();
            packages.dedup();
            let flags: Vec<String> = packages.iter().map(|p| format!("-p {p}")).collect();
            BuildStep {
                workdir,
                command: format!("{rest} {}", flags.join(" ")),
                components,
            }
        });
    let steps = merged.chain(steps).collect();
    Ok(steps)
}

/// Runs the planned steps, stopping at the first failure.
pub fn run(manifest: &Manifest, only: &[String]) -> anyhow::Result<()> {
    let steps = plan(manifest, only)?;
    if steps.is_empty() {
        println!("Nothing to build.");
    }
    for step in steps {
        println!(
            "Building {} with `{}`",
            step.components.join(", "),
            step.command
        );
        let status = Command::new("sh")
            .arg("-c")
            .arg(&step.command)
            .current_dir(&step.workdir)
            .status()
            .with_context(|| format!("cannot run `{}`", step.command))?;
        if !status.success() {
            bail!("build of {} failed ({status})", step.components.join(", "));
        }
    }
    Ok(())
}

/// Splits `cargo build <flags> -p a -p b` into (`cargo build <flags>`, [a, b]);
/// `None` for anything that is not a plain cargo build with packages.
fn split_cargo_packages(command: &str) -> Option<(String, Vec<String>)> {
    let words: Vec<&str> = command.split_whitespace().collect();
    if words.len() < 2 || words[0] != "cargo" || words[1] != "build" {
        return None;
    }
    if words
        .iter()
        .any(|w| w.contains(['&', ';', '|', '$', '`', '>', '<']))
    {
        return None;
    }
    let mut rest = Vec::new();
    let mut packages = Vec::new();
    let mut words = words.into_iter();
    while let Some(word) = words.next() {
        match word {
            "-p" | "--package" => packages.push(words.next()?.to_owned()),
            w if w.starts_with("--package=") => packages.push(w["--package=".len()..].to_owned()),
            w => rest.push(w),
        }
    }
    (!packages.is_empty()).then(|| (rest.join(" "), packages))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn merges_cargo_builds_that_differ_only_in_package() {
        let manifest = Manifest::parse(
            Path::new("app/spin.toml"),
            r#"
spin_manifest_version = 2
[application]
name = "t"
[component.a]
source = "a.wasm"
build = { command = "cargo build --target wasm32-wasip2 --release -p a" }
[component.b]
source = "b.wasm"
build = { command = "cargo build --target wasm32-wasip2 --release --package=b" }
[component.c]
source = "c.wasm"
build = { command = "make c.wasm", workdir = "c" }
"#,
        )
        .unwrap();
        let steps = plan(&manifest, &[]).unwrap();
        assert_eq!(steps.len(), 2);
        assert_eq!(
            steps[0].command,
            "cargo build --target wasm32-wasip2 --release -p a -p b"
        );
        assert_eq!(steps[0].components, ["a", "b"]);
        assert_eq!(steps[1].command, "make c.wasm");
        assert_eq!(steps[1].workdir, Path::new("app/c"));
        assert_eq!(plan(&manifest, &["c".into()]).unwrap().len(), 1);
        assert!(plan(&manifest, &["zzz".into()]).is_err());
    }
}
