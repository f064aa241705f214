//! On-disk cache of compiled components (`.cwasm`), so a second `lamina up`
//! loads in milliseconds instead of recompiling.
//!
//! A `.cwasm` is native code that wasmtime maps without validation, so it is
//! only valid for the exact wasmtime version and engine configuration that
//! produced it, and must only ever be read from a directory the host itself
//! owns. Entries are keyed by the SHA-256 of the wasm plus the engine's
//! compatibility hash, and written atomically (temp file + rename).

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::Context;
use sha2::{Digest, Sha256};
use wasmtime::component::Component;

/// Where a loaded component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Deserialized from an existing `.cwasm`.
    Hit,
    /// Compiled now and written to the cache.
    Compiled,
}

/// The cache directory plus the engine fingerprint entries are keyed on.
pub struct ComponentCache {
    dir: PathBuf,
    engine_key: String,
}

impl ComponentCache {
    /// Opens (creating, owner-only) the cache directory for this engine.
    pub fn open(dir: &Path, engine: &wasmtime::Engine) -> anyhow::Result<ComponentCache> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create cache dir {}", dir.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("cannot restrict permissions of {}", dir.display()))?;
        }
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(ComponentCache {
            dir: dir.to_owned(),
            engine_key: format!("{:016x}", hasher.finish()),
        })
    }

    /// Returns the compiled component for `wasm`, its SHA-256 (hex), and
    /// whether it came from the cache.
    pub fn load_or_compile(
        &self,
        engine: &wasmtime::Engine,
        wasm: &[u8],
    ) -> anyhow::Result<(Component, String, CacheOutcome)> {
        let digest = hex(&Sha256::digest(wasm));
        let path = self.dir.join(format!("{digest}-{}.cwasm", self.engine_key));
        if path.is_file() {
            // SAFETY: the file was written by `precompile_component` of an
            // engine with the same compatibility hash, into a directory only
            // this host writes to.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => return Ok((component, digest, CacheOutcome::Hit)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), "ignoring unreadable cache entry: {e}")
                }
            }
        }
        let compiled = engine
            .precompile_component(wasm)
            .map_err(anyhow::Error::from)
            .context("not a valid WebAssembly component")?;
        // SAFETY: produced just now by the same engine.
        let component =
            unsafe { Component::deserialize(engine, &compiled) }.map_err(anyhow::Error::from)?;
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        if let Err(e) = std::fs::write(&tmp, &compiled).and_then(|()| std::fs::rename(&tmp, &path))
        {
            tracing::warn!(path = %path.display(), "cannot write compile cache entry: {e}");
            let _ = std::fs::remove_file(&tmp);
        }
        Ok((component, digest, CacheOutcome::Compiled))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
