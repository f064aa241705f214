//! `cargo xtask bench conversation`: the conversation service on the
//! application's own spin.toml (gateway, auth, rate limits, the real
//! component and model), in one host:
//!
//! - time to first token of a chat message through
//!   `POST /api/conversations/{id}/messages` (SSE: the user message stored,
//!   the history read and trimmed, then the generation) against the
//!   inference API's `/api/chat` given the same history, alternated, the
//!   median of each;
//! - latency (p50/p99) of listing, searching and reading a conversation
//!   for a user with 10 000 messages, next to the bare `/api/about` route.

use std::time::Instant;

use serde_json::{Value, json};

use crate::bench::{free_port, jwt, median, percentile, start_app, wait_until_listening};
use crate::http_client::{call_json, post_ndjson, request_lines};
use crate::{Result, models, target_dir};

/// Chat rounds per route (odd: the median is one run).
const TTFT_ROUNDS: usize = 21;
/// Requests per read route.
const READS: usize = 301;
/// The seeded history: conversations × messages.
const CONVERSATIONS: usize = 100;
const MESSAGES: usize = 100;
const SYSTEM: &str = "You are a helpful assistant. Answer briefly.";
const QUESTION: &str = "What is the capital of France?";
/// Words the seeded messages are made of (search finds some of them).
const WORDS: [&str; 16] = [
    "harbor", "alpine", "lantern", "quartz", "meadow", "cobalt", "ember", "willow", "granite",
    "orchid", "tundra", "saffron", "canyon", "velvet", "glacier", "juniper",
];

pub fn bench() -> Result {
    let work = target_dir().join("bench/conversation");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let store = target_dir().join("bench/inference/models");
    models::install(Some(&store))?;
    let port = free_port()?;
    let mut child = start_app(&work, &store, port, |m| m)?;
    let outcome = wait_until_listening(port).and_then(|()| measure(port));
    let _ = child.kill();
    let _ = child.wait();
    outcome
}

fn measure(port: u16) -> Result {
    let token = jwt()?;
    let bearer = Some(token.as_str());

    // A conversation with three turns of history, answered from its leaf
    // each round (a new branch each time, so the history stays the same).
    let history = [
        ("user", "Hello! I am planning a trip to Europe."),
        (
            "assistant",
            "That sounds wonderful. Which countries would you like to visit?",
        ),
        ("user", "France and Italy, in the spring."),
        (
            "assistant",
            "Spring is a lovely time: mild weather and fewer crowds.",
        ),
    ];
    let line = conversation_line("Trip", &history);
    let imported = call_json(
        port,
        "POST",
        "/api/conversations/import",
        bearer,
        Some(("application/x-ndjson", line.as_bytes())),
    )?;
    let id = imported["imported"][0]
        .as_str()
        .ok_or("import failed")?
        .to_owned();
    let path = call_json(
        port,
        "GET",
        &format!("/api/conversations/{id}/messages"),
        bearer,
        None,
    )?;
    let leaf = path["items"][3]["id"]
        .as_str()
        .ok_or("no history")?
        .to_owned();
    let mut messages = vec![json!({"role": "system", "content": SYSTEM})];
    messages.extend(
        history
            .iter()
            .map(|(role, content)| json!({"role": role, "content": content})),
    );
    messages.push(json!({"role": "user", "content": QUESTION}));
    let options = json!({"temperature": 0, "num_predict": 1});
    let conversation = || -> Result<f64> {
        let body = json!({"content": QUESTION, "parentId": leaf, "options": options}).to_string();
        let started = Instant::now();
        let mut first = None;
        let mut after_token = false;
        request_lines(
            port,
            "POST",
            &format!("/api/conversations/{id}/messages"),
            bearer,
            Some(("application/json", body.as_bytes())),
            |line| {
                if line == "event: token" {
                    after_token = true;
                } else if after_token && line.starts_with("data:") {
                    first.get_or_insert_with(|| started.elapsed());
                    after_token = false;
                } else if line == "event: error" {
                    return Err("the chat stream failed".into());
                }
                Ok(())
            },
        )?;
        Ok(first.ok_or("no token event")?.as_secs_f64() * 1e3)
    };
    let direct = || -> Result<f64> {
        let body = json!({"model": models::SMOLLM_NAME, "messages": messages, "options": options});
        let started = Instant::now();
        let mut first = None;
        post_ndjson(port, "/api/chat", bearer, &body, |line| {
            if line["message"]["content"]
                .as_str()
                .is_some_and(|c| !c.is_empty())
            {
                first.get_or_insert_with(|| started.elapsed());
            }
            Ok(())
        })?;
        Ok(first.ok_or("no content line")?.as_secs_f64() * 1e3)
    };
    eprintln!(
        "bench: time to first token, conversation vs /api/chat ({TTFT_ROUNDS} rounds, alternated)"
    );
    conversation()?;
    direct()?;
    let (mut via_conversation, mut via_chat) = (Vec::new(), Vec::new());
    for round in 0..TTFT_ROUNDS {
        if round % 2 == 0 {
            via_conversation.push(conversation()?);
            via_chat.push(direct()?);
        } else {
            via_chat.push(direct()?);
            via_conversation.push(conversation()?);
        }
    }
    let (ttft_conversation, ttft_chat) = (median(via_conversation), median(via_chat));

    eprintln!("bench: seeding {CONVERSATIONS} conversations × {MESSAGES} messages");
    let seeded: Vec<String> = (0..CONVERSATIONS)
        .map(|c| {
            let turns: Vec<(&str, String)> = (0..MESSAGES)
                .map(|m| {
                    let words: Vec<&str> = (0..12)
                        .map(|w| WORDS[(c * 7 + m * 3 + w * 5) % WORDS.len()])
                        .collect();
                    (
                        if m % 2 == 0 { "user" } else { "assistant" },
                        words.join(" "),
                    )
                })
                .collect();
            let turns: Vec<(&str, &str)> = turns.iter().map(|(r, t)| (*r, t.as_str())).collect();
            conversation_line(&format!("Notes {c} {}", WORDS[c % WORDS.len()]), &turns)
        })
        .collect();
    for batch in seeded.chunks(20) {
        let body = batch.join("\n");
        call_json(
            port,
            "POST",
            "/api/conversations/import",
            bearer,
            Some(("application/x-ndjson", body.as_bytes())),
        )?;
    }
    let listed = call_json(port, "GET", "/api/conversations?pageSize=1", bearer, None)?;
    let total = listed["total"].as_u64().unwrap_or(0);
    let one = listed["items"][0]["id"]
        .as_str()
        .ok_or("nothing listed")?
        .to_owned();

    let routes = [
        ("bare route: GET /api/about", "/api/about".to_owned()),
        (
            "GET /api/conversations (page of 20)",
            "/api/conversations?pageSize=20".to_owned(),
        ),
        (
            "GET /api/conversations/search?q=glacier (page of 20)",
            "/api/conversations/search?q=glacier&pageSize=20".to_owned(),
        ),
        (
            "GET /api/conversations/search?q=saffron+orch (prefix)",
            "/api/conversations/search?q=saffron+orch".to_owned(),
        ),
        (
            "GET …/{id}/messages (100 messages)",
            format!("/api/conversations/{one}/messages?pageSize=100"),
        ),
    ];
    eprintln!("bench: {READS} requests per read route, round robin");
    let mut latencies: Vec<Vec<f64>> = routes.iter().map(|_| Vec::new()).collect();
    for _ in 0..READS {
        for ((_, path), samples) in routes.iter().zip(&mut latencies) {
            let started = Instant::now();
            call_json(port, "GET", path, bearer, None)?;
            samples.push(started.elapsed().as_secs_f64() * 1e3);
        }
    }

    println!(
        "\n| time to first token ({} history messages, 1 token) | median ms |",
        history.len() + 2
    );
    println!("| --- | ---: |");
    println!("| inference API `/api/chat`, the same messages | {ttft_chat:.1} |");
    println!("| `POST /api/conversations/{{id}}/messages` (SSE) | {ttft_conversation:.1} |");
    println!(
        "| ratio (`/api/chat` ÷ conversation; 1.00 = no cost) | {:.2}x |",
        ttft_chat / ttft_conversation
    );
    println!(
        "\n| read route (one user: {total} conversations, {} messages seeded) | p50 ms | p99 ms |",
        CONVERSATIONS * MESSAGES
    );
    println!("| --- | ---: | ---: |");
    for ((name, _), samples) in routes.iter().zip(latencies) {
        println!(
            "| {name} | {:.2} | {:.2} |",
            percentile(samples.clone(), 0.5),
            percentile(samples, 0.99)
        );
    }
    Ok(())
}

/// One line of the conversation export format, its messages one path.
fn conversation_line(title: &str, messages: &[(&str, &str)]) -> String {
    let messages: Vec<Value> = messages
        .iter()
        .enumerate()
        .map(|(i, (role, content))| {
            json!({"id": format!("m{i}"), "parentId": (i > 0).then(|| format!("m{}", i - 1)), "role": role, "content": content})
        })
        .collect();
    json!({"format": "lamina.conversation.v1", "title": title, "model": models::SMOLLM_NAME, "systemPrompt": SYSTEM, "messages": messages}).to_string()
}
