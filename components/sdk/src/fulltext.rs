//! Full-text queries built from what a user typed, never passed through:
//! the words (letters and digits, what both SQLite's FTS5 `unicode61`
//! tokenizer and PostgreSQL's `simple` configuration index), in each
//! backend's syntax, all required, the last one a prefix (search as you
//! type). Quotes, operators and column filters in the input are just
//! separators, so no query can fail to parse or reach another column.

/// Most words a query keeps.
pub const MAX_WORDS: usize = 16;

/// The query's words, lower-cased, at most [`MAX_WORDS`].
pub fn words(q: &str) -> Vec<String> {
    words_except(q, &[])
}

/// The query's words, lower-cased, without those in `skip` (stop words,
/// lower case), at most [`MAX_WORDS`].
pub fn words_except(q: &str, skip: &[&str]) -> Vec<String> {
    q.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .filter(|w| !skip.contains(&w.as_str()))
        .take(MAX_WORDS)
        .collect()
}

/// The words in a backend's query syntax: each through `word`, the last
/// (a prefix) through `last`, joined by `join`. Panics on no words.
fn query_text(
    words: &[String],
    word: fn(&str) -> String,
    last: fn(&str) -> String,
    join: &str,
) -> String {
    let (tail, head) = words.split_last().expect("at least one word");
    head.iter()
        .map(|w| word(w))
        .chain([last(tail)])
        .collect::<Vec<_>>()
        .join(join)
}

/// FTS5 `MATCH`: `"w1" "w2" "w3"*`.
pub fn fts5_query(words: &[String]) -> String {
    query_text(words, |w| format!("\"{w}\""), |w| format!("\"{w}\"*"), " ")
}

/// PostgreSQL `to_tsquery('simple', …)`: `w1 & w2 & w3:*`.
pub fn tsquery(words: &[String]) -> String {
    query_text(words, str::to_owned, |w| format!("{w}:*"), " & ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_words_only() {
        let w = words("  Paris' \"capital\" OR NEAR(x) *");
        assert_eq!(w, ["paris", "capital", "or", "near", "x"]);
        assert_eq!(fts5_query(&w[..2]), "\"paris\" \"capital\"*");
        assert_eq!(tsquery(&w[..2]), "paris & capital:*");
        assert_eq!(
            words_except("What is the PARIS code", &["what", "is", "the"]),
            ["paris", "code"]
        );
    }
}
