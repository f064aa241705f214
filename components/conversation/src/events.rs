//! The queue topics this service consumes: `user.registered` creates the
//! user's root folder; `user.deleted` removes everything of theirs;
//! `conversation.title` runs [`titles`](crate::titles) jobs. Each is
//! idempotent, as at-least-once delivery needs.

use lamina_sdk::sql::{Database, Sql};
use lamina_sdk::worker::{Guest, Message};
use serde::Deserialize;

use crate::{DATABASE, cached, folders, knowledge, titles};

/// The queue handler export.
pub struct Events;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct User {
    user_id: String,
}

impl Guest for Events {
    fn handle(message: Message) -> Result<(), String> {
        let user = || {
            serde_json::from_slice::<User>(&message.payload)
                .map_err(|e| format!("{}: bad payload: {e}", message.topic))
        };
        match message.topic.as_str() {
            "user.registered" => {
                let db = Database::open(DATABASE).map_err(|e| format!("{e:?}"))?;
                folders::root(&db, &user()?.user_id)
                    .map(drop)
                    .map_err(|e| e.detail)
            }
            "user.deleted" => forget(&user()?.user_id),
            titles::TOPIC => titles::handle(&message.payload),
            knowledge::process::TOPIC => knowledge::process::handle(&message),
            knowledge::purge::TOPIC => knowledge::purge::handle(&message.payload),
            other => Err(format!(
                "the conversation service does not handle topic {other}"
            )),
        }
    }
}

/// Deletes every row of `user` (conversations take their messages, tags,
/// notes, feedback and shares with them; collections their documents and
/// chunks), their files and vectors, and what the cache holds of it.
fn forget(user: &str) -> Result<(), String> {
    let db = Database::open(DATABASE).map_err(|e| format!("{e:?}"))?;
    #[derive(Deserialize)]
    struct Id {
        id: String,
    }
    let conversations: Vec<Id> = db
        .query(
            "SELECT id FROM conv_conversations WHERE user_id = $1",
            &[user.into()],
        )
        .map_err(|e| format!("{e:?}"))?;
    db.transaction(|tx| {
        tx.execute(
            "DELETE FROM conv_conversations WHERE user_id = $1",
            &[user.into()],
        )?;
        tx.execute(
            "DELETE FROM conv_folders WHERE user_id = $1",
            &[user.into()],
        )?;
        tx.execute(
            "DELETE FROM conv_collections WHERE user_id = $1",
            &[user.into()],
        )?;
        Ok::<_, lamina_sdk::sql::Error>(())
    })
    .map_err(|e| format!("{e:?}"))?;
    // After the rows: a processing job that ends meanwhile finds its
    // document gone and removes its own vectors.
    knowledge::purge::user(user)?;
    for conversation in conversations {
        cached::conversation(&conversation.id);
    }
    cached::invalidate(&[cached::folders(user)]);
    Ok(())
}
