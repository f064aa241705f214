//! What the store records about a model file, read once at install time.
//!
//! The file is opened the way the engine will open it (llama.cpp, memory
//! mapped, so this is quick), which both proves it loads and gives the exact
//! parameter count; the rest comes from the GGUF key-value header.

use std::path::Path;

use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use serde::{Deserialize, Serialize};

/// A model's description.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    /// `general.architecture`.
    pub family: String,
    pub parameter_count: u64,
    /// `general.file_type` by its llama.cpp name (`Q4_K_M`).
    pub quantization: String,
    /// `<arch>.context_length`.
    pub context_length: u32,
    /// An embedding (pooled, encoder) model rather than a text generator.
    pub embedding: bool,
    /// Whether the file carries a chat template.
    pub chat_template: bool,
}

/// Reads `path`'s metadata; the error says why llama.cpp cannot use it.
pub fn read(path: &Path) -> Result<Metadata, String> {
    let mut magic = [0u8; 4];
    std::io::Read::read_exact(
        &mut std::fs::File::open(path).map_err(|e| e.to_string())?,
        &mut magic,
    )
    .map_err(|_| "the file is too short".to_owned())?;
    if &magic != b"GGUF" {
        return Err("not a GGUF file".to_owned());
    }
    let model =
        LlamaModel::load_from_file(super::engine::backend(), path, &LlamaModelParams::default())
            .map_err(|e| format!("llama.cpp cannot load it ({e})"))?;
    let family = model
        .meta_val_str("general.architecture")
        .map_err(|_| "no general.architecture".to_owned())?;
    let file_type = model
        .meta_val_str("general.file_type")
        .ok()
        .and_then(|t| t.parse::<u32>().ok());
    let context_length = model.n_ctx_train();
    let pooled = model
        .meta_val_str(&format!("{family}.pooling_type"))
        .is_ok();
    Ok(Metadata {
        embedding: pooled || ENCODERS.contains(&family.as_str()),
        chat_template: model.chat_template(None).is_ok(),
        parameter_count: model.n_params(),
        quantization: file_type.map_or_else(|| "unknown".to_owned(), quantization_name),
        context_length,
        family,
    })
}

/// Architectures llama.cpp runs as embedding encoders.
const ENCODERS: &[&str] = &[
    "bert",
    "nomic-bert",
    "jina-bert-v2",
    "jina-bert-v3",
    "modern-bert",
    "neo-bert",
];

/// llama.cpp's `llama_ftype` names.
fn quantization_name(file_type: u32) -> String {
    let name = match file_type {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        19 => "IQ2_XXS",
        20 => "IQ2_XS",
        21 => "Q2_K_S",
        22 => "IQ3_XS",
        23 => "IQ3_XXS",
        24 => "IQ1_S",
        25 => "IQ4_NL",
        26 => "IQ3_S",
        27 => "IQ3_M",
        28 => "IQ2_S",
        29 => "IQ2_M",
        30 => "IQ4_XS",
        31 => "IQ1_M",
        32 => "BF16",
        36 => "TQ1_0",
        37 => "TQ2_0",
        38 => "MXFP4_MOE",
        other => return format!("type {other}"),
    };
    name.to_owned()
}
