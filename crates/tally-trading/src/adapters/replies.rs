//! Waiting for replies that another service decides (the wallets service answering a payment
//! message or a hold). One task per process reads every awaited reply at once after each commit
//! of trading's database, so a thousand callers waiting cost one query per commit, not a
//! thousand.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{oneshot, Notify};

use super::store::Store;

/// How often awaited replies are looked for when no commit of this process woke the reader
/// (the consumer may run in another process).
const POLL: Duration = Duration::from_millis(50);
/// Most replies looked for in one query.
const MAX_LOOKUP: usize = 1_000;

type Waiting = HashMap<String, Vec<oneshot::Sender<Value>>>;

struct Shared {
    waiting: Mutex<Waiting>,
    wake: Notify,
}

pub struct Replies {
    store: Store,
    shared: Arc<Shared>,
    reader: OnceLock<()>,
}

impl Replies {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            shared: Arc::new(Shared {
                waiting: Mutex::new(HashMap::new()),
                wake: Notify::new(),
            }),
            reader: OnceLock::new(),
        }
    }

    /// The reply of `request_id`, or `None` if it is not decided within `timeout`.
    pub async fn wait(
        &self,
        request_id: &str,
        timeout: Duration,
    ) -> Result<Option<Value>, sqlx::Error> {
        let (sender, receiver) = oneshot::channel();
        self.shared
            .waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(request_id.to_owned())
            .or_default()
            .push(sender);
        self.reader.get_or_init(|| {
            tokio::spawn(read_replies(
                self.store.clone(),
                Arc::downgrade(&self.shared),
            ));
        });
        self.shared.wake.notify_one();
        match tokio::time::timeout(timeout, receiver).await {
            Ok(Ok(reply)) => Ok(Some(reply)),
            _ => {
                let mut waiting = self
                    .shared
                    .waiting
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                if let Some(senders) = waiting.get_mut(request_id) {
                    senders.retain(|s| !s.is_closed());
                    if senders.is_empty() {
                        waiting.remove(request_id);
                    }
                }
                Ok(None)
            }
        }
    }
}

async fn read_replies(store: Store, shared: Weak<Shared>) {
    let mut commits = store.db().subscribe_commits();
    loop {
        let Some(strong) = shared.upgrade() else {
            return;
        };
        let ids: Vec<String> = {
            let waiting = strong.waiting.lock().unwrap_or_else(|e| e.into_inner());
            waiting.keys().take(MAX_LOOKUP).cloned().collect()
        };
        if ids.is_empty() {
            tokio::select! {
                _ = strong.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            continue;
        }
        commits.borrow_and_update();
        match store.replies_of(&ids).await {
            Ok(decided) => {
                let mut waiting = strong.waiting.lock().unwrap_or_else(|e| e.into_inner());
                for (id, reply) in decided {
                    for sender in waiting.remove(&id).unwrap_or_default() {
                        let _ = sender.send(reply.clone());
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "failed to read trading replies"),
        }
        tokio::select! {
            _ = commits.changed() => {}
            _ = strong.wake.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}
