//! `GET /api/explore/models[/{name}]` and `GET /api/explore/tags/{tag}/models`:
//! the catalogue, filtered, sorted and paged.
//!
//! Lists work on every entry's card (one cached read) merged with the
//! store's live view, so the filters on installed state (`installed`,
//! `loaded`) and on what the GGUF header says (`family`, parameters,
//! `quantization`: the store's values where the model is installed, the
//! catalogue's otherwise) are always right. A catalogue is curated by
//! hand: thousands of entries at most, which this handles in
//! milliseconds (`cargo xtask bench explore`).

use std::cmp::Ordering;

use lamina_sdk::api::{ApiError, Reply};
use lamina_sdk::page::{Page, PageRequest};
use lamina_sdk::sql::Sql;

use crate::entry::{self, CAPABILITIES, Card, parse_count};
use crate::live::{Live, LiveCard};
use crate::{Ctx, cached, tags};

/// Query parameters a list takes, besides paging.
#[derive(Debug, Default)]
pub struct Filter {
    /// Every one must be on the entry (case-insensitive).
    pub tags: Vec<String>,
    pub family: Option<String>,
    pub min_parameters: Option<i64>,
    pub max_parameters: Option<i64>,
    pub quantization: Option<String>,
    pub capability: Option<String>,
    pub installed: Option<bool>,
    pub loaded: Option<bool>,
}

/// How a list is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    Name,
    Size,
    Newest,
    Popularity,
}

impl Filter {
    /// Reads and checks the filter parameters; 400 names the bad one.
    pub fn parse(ctx: &Ctx) -> Result<Filter, ApiError> {
        let bad =
            |name: &str, why: &str| ApiError::new(400, "invalid filter", format!("{name}: {why}"));
        let flag = |name: &str| match ctx.query(name).as_deref() {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(_) => Err(bad(name, "true or false")),
        };
        let count = |name: &str| match ctx.query(name) {
            None => Ok(None),
            Some(raw) => parse_count(&raw)
                .map(Some)
                .ok_or_else(|| bad(name, "a parameter count such as 135M, 1.5B or 7000000")),
        };
        let short = |name: &str| match ctx.query(name) {
            Some(v) if v.is_empty() || v.chars().count() > 100 => {
                Err(bad(name, "1 to 100 characters"))
            }
            other => Ok(other),
        };
        let tags = ctx.query_all("tag");
        if tags.len() > 10 || tags.iter().any(|t| t.is_empty() || t.chars().count() > 50) {
            return Err(bad("tag", "at most 10 tags of 1 to 50 characters"));
        }
        let capability = short("capability")?;
        if let Some(c) = &capability
            && !CAPABILITIES.contains(&c.as_str())
        {
            return Err(bad("capability", "chat, completion or embedding"));
        }
        Ok(Filter {
            tags,
            family: short("family")?,
            min_parameters: count("minParameters")?,
            max_parameters: count("maxParameters")?,
            quantization: short("quantization")?,
            capability,
            installed: flag("installed")?,
            loaded: flag("loaded")?,
        })
    }

    /// Whether `item` passes every filter.
    pub fn accepts(&self, item: &LiveCard) -> bool {
        let card = &item.card;
        let same = |want: &Option<String>, have: &Option<String>| match want {
            None => true,
            Some(want) => have.as_ref().is_some_and(|h| same_text(h, want)),
        };
        let parameters = card.parameter_count;
        self.tags
            .iter()
            .all(|want| card.tags.iter().any(|t| t.eq_ignore_ascii_case(want)))
            && same(&self.family, &card.family)
            && same(&self.quantization, &card.quantization_level)
            && self
                .capability
                .as_ref()
                .is_none_or(|c| card.capabilities.contains(c))
            && self
                .min_parameters
                .is_none_or(|min| parameters.is_some_and(|p| p >= min))
            && self
                .max_parameters
                .is_none_or(|max| parameters.is_some_and(|p| p <= max))
            && self.installed.is_none_or(|i| item.store.installed == i)
            && self.loaded.is_none_or(|l| item.store.loaded == l)
    }
}

/// Equal whatever the case (as tag names are unique).
fn same_text(a: &str, b: &str) -> bool {
    a.to_lowercase() == b.to_lowercase()
}

impl Sort {
    /// `?sort=name|size|newest|popularity` (default name).
    pub fn parse(ctx: &Ctx) -> Result<Sort, ApiError> {
        match ctx.query("sort").as_deref() {
            None | Some("name") => Ok(Sort::Name),
            Some("size") => Ok(Sort::Size),
            Some("newest") => Ok(Sort::Newest),
            Some("popularity") => Ok(Sort::Popularity),
            Some(_) => Err(ApiError::new(
                400,
                "invalid sort",
                "sort: name, size, newest or popularity",
            )),
        }
    }

    /// Name A→Z, smallest first, newest first, most used first; ties by name.
    fn compare(self, a: &LiveCard, b: &LiveCard) -> Ordering {
        let (a, b) = (&a.card, &b.card);
        let first = match self {
            Sort::Name => Ordering::Equal,
            // Unknown sizes last.
            Sort::Size => a.size.unwrap_or(i64::MAX).cmp(&b.size.unwrap_or(i64::MAX)),
            Sort::Newest => b.created_at.cmp(&a.created_at),
            Sort::Popularity => b.uses.cmp(&a.uses),
        };
        first.then_with(|| a.name.cmp(&b.name))
    }
}

/// Every entry's card (cached).
pub fn cards(db: &impl Sql) -> Result<Vec<Card>, ApiError> {
    cached::get_or_load(&cached::cards(), || {
        Ok(entry::load_all(db)?.into_iter().map(Card::from).collect())
    })
}

/// The page of `cards` that passes `filter`, in `sort` order.
fn page(
    cards: Vec<Card>,
    live: &Live,
    filter: &Filter,
    sort: Sort,
    request: PageRequest,
) -> Page<LiveCard> {
    let mut items: Vec<LiveCard> = cards
        .into_iter()
        .map(|card| live.card(card))
        .filter(|item| filter.accepts(item))
        .collect();
    items.sort_by(|a, b| sort.compare(a, b));
    let total = items.len() as u64;
    let items = items
        .into_iter()
        .skip(request.offset() as usize)
        .take(request.page_size as usize)
        .collect();
    Page::new(items, request, total)
}

/// `?page=&pageSize=`.
pub fn page_request(ctx: &Ctx) -> Result<PageRequest, ApiError> {
    PageRequest::parse(
        ctx.query("page").as_deref(),
        ctx.query("pageSize").as_deref(),
    )
    .map_err(|e| ApiError::new(400, "invalid paging", e))
}

/// `GET /api/explore/models?tag=&family=&minParameters=&maxParameters=&quantization=&capability=&installed=&loaded=&sort=&page=&pageSize=`.
pub fn list(ctx: &Ctx) -> Result<Reply, ApiError> {
    let filter = Filter::parse(ctx)?;
    list_with(ctx, filter)
}

/// `GET /api/explore/tags/{tag}/models`: the list of one tag's entries
/// (the other filters apply too); 404 for an unknown tag.
pub fn by_tag(ctx: &Ctx) -> Result<Reply, ApiError> {
    let tag = ctx.param("tag");
    let known = tags::counts(&ctx.db)?;
    let Some(tag) = known.iter().find(|t| same_text(&t.name, &tag)) else {
        return Err(ApiError::not_found(format!("no tag `{tag}`")));
    };
    let mut filter = Filter::parse(ctx)?;
    filter.tags.push(tag.name.clone());
    list_with(ctx, filter)
}

fn list_with(ctx: &Ctx, filter: Filter) -> Result<Reply, ApiError> {
    let sort = Sort::parse(ctx)?;
    let request = page_request(ctx)?;
    let cards = cards(&ctx.db)?;
    let live = Live::read()?;
    Ok(Reply::json(200, page(cards, &live, &filter, sort, request)))
}

/// `GET /api/explore/models/{name}`: the entry and the store's view.
pub fn get(ctx: &Ctx) -> Result<Reply, ApiError> {
    let name = crate::admin::path_name(ctx)?;
    let entry = cached::get_or_load(&cached::entry(&name), || entry::load(&ctx.db, &name))?;
    Ok(Reply::json(200, Live::read()?.entry(entry)))
}
