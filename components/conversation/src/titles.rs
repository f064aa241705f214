//! Titles: after an answer in a conversation that still has the default
//! title, a `conversation.title` job (one per conversation: the idempotency
//! key) asks the conversation's model for a short title. A title the user
//! set, before or while the job runs, is never overwritten, nor is one a
//! job already wrote.

use lamina_sdk::api::now_ms;
use lamina_sdk::inference::{self, Chunk, Options};
use lamina_sdk::queue;
use lamina_sdk::sql::{Database, Sql};
use serde::{Deserialize, Serialize};

use crate::conversations::{COLUMNS, Conversation, MAX_TITLE, UNTITLED};
use crate::{DATABASE, cached};

/// The job's topic.
pub const TOPIC: &str = "conversation.title";
/// Longest generated title, in characters.
const MAX_GENERATED: usize = 80;
/// How much of the first message the model reads.
const EXCERPT: usize = 1000;

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Job {
    conversation_id: String,
    user_id: String,
}

/// Whether `conversation` still waits for a generated title: neither the
/// user nor an earlier job gave it one.
pub fn wanted(conversation: &Conversation) -> bool {
    !conversation.title_by_user && conversation.title == UNTITLED
}

/// Queues the title job for `conversation` (once: later requests are
/// deduplicated). A queue failure is logged: the title can wait.
pub fn request(conversation: &str, user: &str) {
    let job = Job {
        conversation_id: conversation.to_owned(),
        user_id: user.to_owned(),
    };
    let payload = serde_json::to_vec(&job).expect("jobs serialize");
    let key = format!("title:{conversation}");
    if let Err(e) = queue::publish_with(TOPIC, &payload, Some(&key), None) {
        eprintln!("title job not queued: {e:?}");
    }
}

/// Runs one job.
pub fn handle(payload: &[u8]) -> Result<(), String> {
    let job: Job = serde_json::from_slice(payload).map_err(|e| format!("bad title job: {e}"))?;
    let db = Database::open(DATABASE).map_err(|e| format!("{e:?}"))?;
    let select = format!("SELECT {COLUMNS} FROM conv_conversations WHERE id = $1 AND user_id = $2");
    let conversation: Option<Conversation> = db
        .query_one(
            &select,
            &[
                job.conversation_id.as_str().into(),
                job.user_id.as_str().into(),
            ],
        )
        .map_err(|e| format!("{e:?}"))?;
    let Some(conversation) = conversation.filter(|c| wanted(c) && c.deleted_at.is_none()) else {
        return Ok(());
    };
    #[derive(Deserialize)]
    struct First {
        content: String,
    }
    let first: Option<First> = db
        .query_one(
            "SELECT content FROM conv_messages WHERE conversation_id = $1 AND role = 'user' ORDER BY seq LIMIT 1",
            &[conversation.id.as_str().into()],
        )
        .map_err(|e| format!("{e:?}"))?;
    let Some(first) = first else { return Ok(()) };
    let excerpt: String = first.content.chars().take(EXCERPT).collect();
    let ask = inference::Message {
        role: "user".into(),
        content: format!(
            "Write a title of at most six words for a conversation that starts with the text below. \
             Answer with the title only.\n\n{excerpt}"
        ),
    };
    let options = Options {
        temperature: Some(0.0),
        num_predict: Some(24),
        ..Options::default()
    };
    let generation = match inference::chat(&conversation.model, &[ask], &options) {
        Ok(generation) => generation,
        // The model is gone: keep the default title rather than retry.
        Err(inference::Error::NoSuchModel(_) | inference::Error::AccessDenied(_)) => return Ok(()),
        Err(e) => return Err(format!("title generation: {e:?}")),
    };
    let mut text = String::new();
    while let Some(chunk) = generation
        .next()
        .map_err(|e| format!("title generation: {e:?}"))?
    {
        match chunk {
            Chunk::Text(piece) => text.push_str(&piece),
            Chunk::Done(stats) => lamina_sdk::usage::record_for(
                Some(&job.user_id),
                None,
                &conversation.model,
                stats.prompt_tokens,
                stats.completion_tokens,
                Some(inference::done_reason(stats.done_reason)),
            ),
        }
    }
    let Some(title) = clean(&text) else {
        return Ok(());
    };
    db.execute(
        "UPDATE conv_conversations SET title = $1, updated_at = $2 \
         WHERE id = $3 AND title_by_user = $4 AND title = $5 AND deleted_at IS NULL",
        &[
            title.into(),
            now_ms().into(),
            conversation.id.as_str().into(),
            false.into(),
            UNTITLED.into(),
        ],
    )
    .map_err(|e| format!("{e:?}"))?;
    cached::conversation(&conversation.id);
    cached::invalidate(&[cached::folders(&job.user_id)]);
    Ok(())
}

/// The model's answer as a title: its first non-empty line without
/// quotes, markdown or a `Title:` label, capped; `None` if nothing is left.
fn clean(answer: &str) -> Option<String> {
    let line = answer.lines().map(str::trim).find(|l| !l.is_empty())?;
    let line = line
        .strip_prefix("Title:")
        .or_else(|| line.strip_prefix("title:"))
        .unwrap_or(line);
    let trimmed = line
        .trim_matches(|c: char| c.is_whitespace() || "\"'`*#_“”‘’".contains(c))
        .trim_end_matches(['.', ':', ';', ','])
        .trim();
    let capped: String = trimmed
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_GENERATED.min(MAX_TITLE))
        .collect();
    let capped = capped.trim();
    (!capped.is_empty() && capped != UNTITLED).then(|| capped.to_owned())
}

#[cfg(test)]
mod tests {
    use super::clean;

    #[test]
    fn titles_are_cleaned_and_capped() {
        assert_eq!(
            clean("\n  \"Paris, the capital.\"\nmore"),
            Some("Paris, the capital".into())
        );
        assert_eq!(
            clean("Title: **Rust lifetimes**"),
            Some("Rust lifetimes".into())
        );
        assert_eq!(clean("   \n \"\" "), None);
        assert!(clean(&"word ".repeat(50)).unwrap().chars().count() <= 80);
    }
}
