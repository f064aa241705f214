//! The stock Python clients the inference API is tested against (`ollama`
//! and `openai` from PyPI, and LangChain's integrations on top of them),
//! in a virtualenv of their own under the cache dir, created or updated
//! once per version pin.

use std::path::PathBuf;

use crate::Result;
use crate::models::{cache_dir, venv_with};

/// Pinned client versions: a new pin rebuilds the virtualenv.
const PACKAGES: [&str; 4] = [
    "ollama==0.6.3",
    "openai==3.57.0",
    "langchain-ollama==1.1.0",
    "langchain-openai==1.7.4",
];

/// The virtualenv's python, with the clients installed.
pub fn python() -> Result<PathBuf> {
    let venv = cache_dir().join("clients-venv");
    let python = venv.join("bin/python");
    let marker = venv.join("lamina-packages");
    let wanted = PACKAGES.join(" ");
    if std::fs::read_to_string(&marker).is_ok_and(|have| have == wanted) && python.is_file() {
        return Ok(python);
    }
    eprintln!("xtask: installing the Python clients the tests drive ({wanted})");
    let python = venv_with(&venv, &PACKAGES)?;
    std::fs::write(&marker, wanted).map_err(|e| e.to_string())?;
    Ok(python)
}
