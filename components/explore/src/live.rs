//! What the answering host's model store says now: which models are
//! installed (with their GGUF metadata) and which are loaded. Read on
//! every request and never cached, then merged into the catalogue's
//! (cached) curation, so installs and removals made any way show at once.

use std::collections::HashMap;

use lamina_sdk::api::{ApiError, timestamp_secs};
use lamina_sdk::inference::{self, LoadedModel, ModelInfo};
use serde::Serialize;

use crate::entry::{Card, Entry, count_label};

/// The store's models and the loaded ones, by name.
pub struct Live {
    pub installed: HashMap<String, ModelInfo>,
    pub loaded: HashMap<String, LoadedModel>,
}

impl Live {
    /// Reads the store.
    pub fn read() -> Result<Live, ApiError> {
        let engine = |e: inference::Error| ApiError::new(e.status(), "model store", e.detail());
        Ok(Live {
            installed: inference::list_models()
                .map_err(engine)?
                .into_iter()
                .map(|m| (m.name.clone(), m))
                .collect(),
            loaded: inference::loaded_models()
                .map_err(engine)?
                .into_iter()
                .map(|m| (m.name.clone(), m))
                .collect(),
        })
    }

    /// The store's view of `name`.
    pub fn view(&self, name: &str) -> StoreView {
        let loaded = self.loaded.get(name);
        StoreView {
            installed: self.installed.contains_key(name),
            loaded: loaded.is_some(),
            installed_model: self.installed.get(name).map(Installed::from),
            loaded_until: loaded.and_then(|l| l.expires_at).map(timestamp_secs),
        }
    }

    /// A card with the store's view: the store's metadata wins over the
    /// catalogue's where the model is installed.
    pub fn card(&self, card: Card) -> LiveCard {
        let mut card = card;
        if let Some(model) = self.installed.get(&card.name) {
            card.family = Some(model.family.clone());
            card.parameter_count = Some(model.parameter_count as i64);
            card.parameter_size
                .get_or_insert_with(|| count_label(model.parameter_count));
            card.quantization_level = Some(model.quantization.clone());
            card.size = Some(model.size as i64);
            card.context_length = Some(model.context_length.into());
            if card.capabilities.is_empty() {
                card.capabilities = capabilities(model);
            }
        }
        if card.parameter_count.is_none() {
            card.parameter_count = card
                .parameter_size
                .as_deref()
                .and_then(crate::entry::parse_count);
        }
        LiveCard {
            store: self.view(&card.name),
            card,
        }
    }

    /// An entry with the store's view.
    pub fn entry(&self, entry: Entry) -> LiveEntry {
        LiveEntry {
            store: self.view(&entry.name),
            entry,
        }
    }
}

/// What a model's GGUF says it can do, when the catalogue does not say.
pub fn capabilities(model: &ModelInfo) -> Vec<String> {
    if model.embedding {
        vec!["embedding".into()]
    } else {
        vec!["completion".into()]
    }
}

/// Whether the model is installed and loaded on the answering host.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreView {
    pub installed: bool,
    pub loaded: bool,
    /// What the store knows of the installed file (from its GGUF header).
    #[serde(rename = "store")]
    pub installed_model: Option<Installed>,
    /// When it unloads if idle.
    pub loaded_until: Option<String>,
}

/// The installed file, as the store describes it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Installed {
    pub size: u64,
    pub digest: String,
    pub family: String,
    pub parameter_count: u64,
    pub quantization: String,
    pub context_length: u32,
    pub embedding: bool,
    pub installed_at: String,
}

impl From<&ModelInfo> for Installed {
    fn from(m: &ModelInfo) -> Installed {
        Installed {
            size: m.size,
            digest: m.digest.clone(),
            family: m.family.clone(),
            parameter_count: m.parameter_count,
            quantization: m.quantization.clone(),
            context_length: m.context_length,
            embedding: m.embedding,
            installed_at: timestamp_secs(m.installed_at),
        }
    }
}

/// A list item.
#[derive(Debug, Serialize)]
pub struct LiveCard {
    #[serde(flatten)]
    pub card: Card,
    #[serde(flatten)]
    pub store: StoreView,
}

/// A model's page.
#[derive(Debug, Serialize)]
pub struct LiveEntry {
    #[serde(flatten)]
    pub entry: Entry,
    #[serde(flatten)]
    pub store: StoreView,
}
