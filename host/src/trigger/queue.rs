//! The queue trigger: for each `[[trigger.queue]]`, `concurrency` consumer
//! tasks claim the component's copies of the topic's messages and run them
//! through its `queue-handler` export, each in a fresh instance. Several
//! components may subscribe to one topic: each handles every message.
//!
//! A handler error, trap, deadline or timeout is a failed attempt: the
//! message comes back after an exponential backoff, and after
//! `queue.max_attempts` it is dead-lettered (listed and replayed through the
//! admin API). A host that dies mid-message loses its claim after the
//! visibility timeout (a live one keeps extending its claim while the
//! handler runs), and another consumer (or this host, restarted) gets
//! the message again: delivery is at-least-once.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::app::App;
use crate::capabilities::bindings::exports::lamina::platform::queue_handler::Message;
use crate::capabilities::queue::Delivery;
use crate::engine::RequestLimits;
use crate::manifest::QueueTrigger;

/// Running consumers; [`Consumers::stop`] waits for in-flight messages.
pub struct Consumers {
    tasks: JoinSet<()>,
}

impl Consumers {
    /// Waits for every consumer to finish its current message and exit
    /// (they watch the same stop signal as the listeners).
    pub async fn stop(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Starts the consumers of every queue trigger.
pub async fn start(app: Arc<App>, stopped: watch::Receiver<bool>) -> anyhow::Result<Consumers> {
    let mut tasks = JoinSet::new();
    let topics: BTreeSet<String> = app
        .queue_triggers()
        .iter()
        .map(|t| t.topic.clone())
        .collect();
    for topic in &topics {
        app.capabilities()
            .queue
            .subscribe(topic)
            .await
            .map_err(|e| anyhow::anyhow!("cannot subscribe to topic `{topic}`: {e}"))?;
    }
    for trigger in app.queue_triggers() {
        for _ in 0..trigger.concurrency {
            tasks.spawn(consume(app.clone(), trigger.clone(), stopped.clone()));
        }
        tracing::info!(topic = %trigger.topic, component = %trigger.component, concurrency = trigger.concurrency, "queue consumer started");
    }
    if !topics.is_empty() {
        tasks.spawn(sample_depth(
            app.clone(),
            topics.into_iter().collect(),
            stopped,
        ));
    }
    Ok(Consumers { tasks })
}

/// How often the queue-depth gauges are refreshed.
const DEPTH_SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// Keeps `lamina_queue_depth` and `lamina_queue_dead_letters` current for
/// the consumed topics.
async fn sample_depth(app: Arc<App>, topics: Vec<String>, mut stopped: watch::Receiver<bool>) {
    let queue = &app.capabilities().queue;
    while !*stopped.borrow() {
        for topic in &topics {
            if let Ok(depth) = queue.depth(topic).await {
                metrics::gauge!("lamina_queue_depth", "topic" => topic.clone())
                    .set(depth.waiting as f64);
                metrics::gauge!("lamina_queue_dead_letters", "topic" => topic.clone())
                    .set(depth.dead as f64);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(DEPTH_SAMPLE_EVERY) => {}
            _ = stopped.changed() => {}
        }
    }
}

/// One consumer loop: claim, handle, settle; idle until a publish on this
/// host or the poll interval.
async fn consume(app: Arc<App>, trigger: QueueTrigger, mut stopped: watch::Receiver<bool>) {
    let queue = &app.capabilities().queue;
    let poll = queue.config().poll_interval;
    while !*stopped.borrow() {
        let claimed = queue.claim(&trigger.topic, &trigger.component).await;
        match claimed {
            Ok(Some(delivery)) => {
                handle(&app, &trigger, delivery).await;
                continue;
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(topic = %trigger.topic, "cannot claim a message: {error}");
            }
        }
        tokio::select! {
            _ = stopped.changed() => {}
            _ = queue.published() => {}
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

async fn handle(app: &App, trigger: &QueueTrigger, delivery: Delivery) {
    let queue = &app.capabilities().queue;
    let Some(component) = app.component(&trigger.component) else {
        return;
    };
    let message = Message {
        id: delivery.id.clone(),
        topic: delivery.topic.clone(),
        payload: delivery.payload.clone(),
        attempt: delivery.attempt,
        idempotency_key: delivery.idempotency_key.clone(),
        published_at: delivery.published_at,
    };
    let limits = RequestLimits {
        timeout: trigger.timeout,
        execution_deadline: trigger.timeout.min(trigger.execution_deadline),
    };
    let handled = component.handle_message(message, limits);
    let keep_alive = async {
        let period = queue.config().visibility_timeout / 3;
        loop {
            tokio::time::sleep(period).await;
            tracing::debug!(topic = %trigger.topic, id = %delivery.id, "extending the claim");
            if let Err(error) = queue.extend(&delivery).await {
                tracing::warn!(topic = %trigger.topic, id = %delivery.id, "cannot extend a claim: {error}");
            }
        }
    };
    let result = tokio::select! {
        result = handled => result,
        never = keep_alive => never,
    };
    let outcome = match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(error),
        Err(error) => Err(format!("{error}")),
    };
    let settled = match outcome {
        Ok(()) => {
            metrics::counter!("lamina_queue_handled_total", "topic" => trigger.topic.clone())
                .increment(1);
            queue.ack(&delivery).await
        }
        Err(error) => {
            metrics::counter!("lamina_queue_failed_total", "topic" => trigger.topic.clone())
                .increment(1);
            let dead = queue.fail(&delivery, &error).await;
            match &dead {
                Ok(true) => {
                    tracing::warn!(topic = %trigger.topic, id = %delivery.id, attempt = delivery.attempt, %error, "message dead-lettered")
                }
                Ok(false) => {
                    tracing::info!(topic = %trigger.topic, id = %delivery.id, attempt = delivery.attempt, %error, "message failed; will retry")
                }
                Err(_) => {}
            }
            dead.map(|_| ())
        }
    };
    if let Err(error) = settled {
        // The claim expires and the message is delivered again.
        tracing::warn!(topic = %trigger.topic, id = %delivery.id, "cannot settle a message: {error}");
    }
}
