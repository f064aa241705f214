//! A catalogue entry: its row, its JSON shape, and the card lists show.
//!
//! The fields are the predecessor's `CreateModelRequest` (with its
//! limits, [`FIELDS`]) plus what users of a catalogue look for: a title,
//! an author, where the file comes from (`sourceUrl`, `sha256`), the
//! capabilities (`chat`, `completion`, `embedding`) and recommended
//! options.

use std::collections::HashMap;

use lamina_sdk::api::{ApiError, timestamp};
use lamina_sdk::sql::{Sql, Value};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// The columns an entry is read with (not the embedding).
pub const COLUMNS: &str = "name, title, description, author, version, license, template, \
     model_file, reference_link, image_url, source_url, sha256, digest, format, parameter_size, \
     quantization_level, parent_model, family, families, languages, capabilities, architecture, \
     file_type, parameter_count, quantization_version, size_label, model_type, size, \
     context_length, options, released_at, uses, created_by, created_at, updated_at";

/// The capabilities an entry may list.
pub const CAPABILITIES: [&str; 3] = ["chat", "completion", "embedding"];

/// An entry's row.
#[derive(Debug, Clone, Deserialize)]
pub struct Row {
    pub name: String,
    pub title: String,
    pub description: String,
    pub author: Option<String>,
    pub version: Option<String>,
    pub license: Option<String>,
    pub template: Option<String>,
    pub model_file: Option<String>,
    pub reference_link: Option<String>,
    pub image_url: Option<String>,
    pub source_url: Option<String>,
    pub sha256: Option<String>,
    pub digest: Option<String>,
    pub format: Option<String>,
    pub parameter_size: Option<String>,
    pub quantization_level: Option<String>,
    pub parent_model: Option<String>,
    pub family: Option<String>,
    pub families: String,
    pub languages: String,
    pub capabilities: String,
    pub architecture: Option<String>,
    pub file_type: Option<i64>,
    pub parameter_count: Option<i64>,
    pub quantization_version: Option<i64>,
    pub size_label: Option<String>,
    pub model_type: Option<String>,
    pub size: Option<i64>,
    pub context_length: Option<i64>,
    pub options: String,
    pub released_at: Option<i64>,
    pub uses: i64,
    pub created_by: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// An entry as the API shows it (what the catalogue says; the store's
/// view is added by [`crate::live`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub name: String,
    pub title: String,
    pub description: String,
    pub author: Option<String>,
    pub version: Option<String>,
    pub license: Option<String>,
    pub template: Option<String>,
    pub model_file: Option<String>,
    pub reference_link: Option<String>,
    pub image_url: Option<String>,
    pub source_url: Option<String>,
    pub sha256: Option<String>,
    pub digest: Option<String>,
    pub format: Option<String>,
    pub parameter_size: Option<String>,
    pub quantization_level: Option<String>,
    pub parent_model: Option<String>,
    pub family: Option<String>,
    pub families: Vec<String>,
    pub languages: Vec<String>,
    pub capabilities: Vec<String>,
    pub architecture: Option<String>,
    pub file_type: Option<i64>,
    pub parameter_count: Option<i64>,
    pub quantization_version: Option<i64>,
    pub size_label: Option<String>,
    pub model_type: Option<String>,
    pub size: Option<i64>,
    pub context_length: Option<i64>,
    /// Recommended Ollama options.
    pub options: Json,
    pub released_at: Option<String>,
    /// Generations counted on this model (popularity).
    pub uses: i64,
    pub tags: Vec<String>,
    pub created_by: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<Row> for Entry {
    fn from(row: Row) -> Entry {
        let list = |text: &str| serde_json::from_str(text).unwrap_or_default();
        Entry {
            families: list(&row.families),
            languages: list(&row.languages),
            capabilities: list(&row.capabilities),
            options: serde_json::from_str(&row.options)
                .unwrap_or_else(|_| Json::Object(Default::default())),
            released_at: row.released_at.map(timestamp),
            created_at: timestamp(row.created_at),
            updated_at: timestamp(row.updated_at),
            tags: Vec::new(),
            name: row.name,
            title: row.title,
            description: row.description,
            author: row.author,
            version: row.version,
            license: row.license,
            template: row.template,
            model_file: row.model_file,
            reference_link: row.reference_link,
            image_url: row.image_url,
            source_url: row.source_url,
            sha256: row.sha256,
            digest: row.digest,
            format: row.format,
            parameter_size: row.parameter_size,
            quantization_level: row.quantization_level,
            parent_model: row.parent_model,
            family: row.family,
            architecture: row.architecture,
            file_type: row.file_type,
            parameter_count: row.parameter_count,
            quantization_version: row.quantization_version,
            size_label: row.size_label,
            model_type: row.model_type,
            size: row.size,
            context_length: row.context_length,
            uses: row.uses,
            created_by: row.created_by,
        }
    }
}

/// What a list shows of an entry, before the store's view is merged in
/// (the description cut to [`CARD_DESCRIPTION`] characters).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Card {
    pub name: String,
    pub title: String,
    pub description: String,
    pub author: Option<String>,
    pub license: Option<String>,
    pub image_url: Option<String>,
    pub family: Option<String>,
    pub parameter_size: Option<String>,
    pub parameter_count: Option<i64>,
    pub quantization_level: Option<String>,
    pub capabilities: Vec<String>,
    pub size: Option<i64>,
    pub context_length: Option<i64>,
    pub uses: i64,
    pub tags: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// Characters of the description a card shows.
pub const CARD_DESCRIPTION: usize = 200;

impl From<Entry> for Card {
    fn from(e: Entry) -> Card {
        let description = match e.description.char_indices().nth(CARD_DESCRIPTION) {
            Some((end, _)) => format!("{}…", e.description[..end].trim_end()),
            None => e.description,
        };
        Card {
            name: e.name,
            title: e.title,
            description,
            author: e.author,
            license: e.license,
            image_url: e.image_url,
            family: e.family,
            parameter_size: e.parameter_size,
            parameter_count: e.parameter_count,
            quantization_level: e.quantization_level,
            capabilities: e.capabilities,
            size: e.size,
            context_length: e.context_length,
            uses: e.uses,
            tags: e.tags,
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

/// One entry by name, or 404.
pub fn load(db: &impl Sql, name: &str) -> Result<Entry, ApiError> {
    let mut entry: Entry = db
        .query_one::<Row>(
            &format!("SELECT {COLUMNS} FROM explore_models WHERE name = $1"),
            &[name.into()],
        )?
        .map(Entry::from)
        .ok_or_else(|| ApiError::not_found(format!("no model `{name}` in the catalogue")))?;
    entry.tags = tags_of(db, Some(name))?
        .into_iter()
        .map(|t| t.tag)
        .collect();
    Ok(entry)
}

/// Every entry, by name.
pub fn load_all(db: &impl Sql) -> Result<Vec<Entry>, ApiError> {
    let mut entries: Vec<Entry> = db
        .query::<Row>(
            &format!("SELECT {COLUMNS} FROM explore_models ORDER BY name"),
            &[],
        )?
        .into_iter()
        .map(Entry::from)
        .collect();
    let mut tags: HashMap<String, Vec<String>> = HashMap::new();
    for t in tags_of(db, None)? {
        tags.entry(t.model).or_default().push(t.tag);
    }
    for entry in &mut entries {
        entry.tags = tags.remove(&entry.name).unwrap_or_default();
    }
    Ok(entries)
}

#[derive(Deserialize)]
struct TagOf {
    model: String,
    tag: String,
}

/// The tags of `model` (or of every entry), by model then tag name.
fn tags_of(db: &impl Sql, model: Option<&str>) -> Result<Vec<TagOf>, ApiError> {
    let filter = if model.is_some() {
        "WHERE mt.model = $1"
    } else {
        ""
    };
    let params: Vec<Value> = model.into_iter().map(Value::from).collect();
    Ok(db.query(
        &format!(
            "SELECT mt.model, t.name AS tag FROM explore_model_tags mt \
             JOIN explore_tags t ON t.id = mt.tag_id {filter} ORDER BY mt.model, t.name_key"
        ),
        &params,
    )?)
}

/// The tag names of `model`, space-separated, for full-text search.
pub fn search_tags(db: &impl Sql, model: &str) -> Result<String, ApiError> {
    Ok(tags_of(db, Some(model))?
        .into_iter()
        .map(|t| t.tag)
        .collect::<Vec<_>>()
        .join(" "))
}

/// `Some(text)` as a SQL value, `None` as NULL.
pub fn text(value: &Option<String>) -> Value {
    value.as_deref().map_or(Value::Null, Value::from)
}

/// `Some(n)` as a SQL value, `None` as NULL.
pub fn int(value: Option<i64>) -> Value {
    value.map_or(Value::Null, Value::from)
}

/// A parameter count from a label as catalogues write it (`270M`, `1.5B`,
/// `22m`, `7000000`).
pub fn parse_count(label: &str) -> Option<i64> {
    let label = label.trim();
    let (number, scale) = match label.chars().last()?.to_ascii_uppercase() {
        'K' => (&label[..label.len() - 1], 1e3),
        'M' => (&label[..label.len() - 1], 1e6),
        'B' => (&label[..label.len() - 1], 1e9),
        'T' => (&label[..label.len() - 1], 1e12),
        _ => (label, 1.0),
    };
    let value: f64 = number.trim().parse().ok()?;
    (value.is_finite() && value >= 0.0).then(|| (value * scale).round() as i64)
}

/// A parameter count as a label (`268M`, `1.2B`).
pub fn count_label(count: u64) -> String {
    let count = count as f64;
    if count >= 1e9 {
        format!("{:.1}B", count / 1e9)
    } else if count >= 1e6 {
        format!("{:.0}M", count / 1e6)
    } else {
        format!("{:.0}K", count / 1e3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_counts_read_as_catalogues_write_them() {
        assert_eq!(parse_count("270M"), Some(270_000_000));
        assert_eq!(parse_count("1.5b"), Some(1_500_000_000));
        assert_eq!(parse_count("7000"), Some(7000));
        assert_eq!(parse_count("big"), None);
        assert_eq!(parse_count("-1M"), None);
        assert_eq!(count_label(268_098_176), "268M");
        assert_eq!(count_label(1_236_000_000), "1.2B");
    }
}
