//! Per-key FIFO execution: operations submitted for one key run one at a time, in submission
//! order, each as its own tokio task; different keys run concurrently. [`FilerStore`]'s guarantee
//! "call order is apply order" rests on this.
//!
//! How: `submit` (synchronous) swaps the key's tail for a new "done" signal and spawns a task that
//! first waits for the previous tail, then runs the operation, then signals. The task is never
//! cancelled by the caller (dropping the returned future only detaches it), so the chain cannot
//! break and an issued write is always applied before the next one starts. A key's entry is
//! removed when its last operation finishes, so idle keys cost nothing.
//!
//! [`FilerStore`]: super::FilerStore

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::runtime::Handle;
use tokio::sync::oneshot;

use super::{StoreError, StoreFuture};

struct Tail {
    seq: u64,
    done: oneshot::Receiver<()>,
}

#[derive(Default)]
struct Slots {
    next_seq: u64,
    tails: HashMap<String, Tail>,
}

/// Runs operations in per-key FIFO order on a tokio runtime.
pub(crate) struct KeyedQueue {
    runtime: Handle,
    slots: Arc<Mutex<Slots>>,
}

impl KeyedQueue {
    pub(crate) fn new(runtime: Handle) -> Self {
        KeyedQueue {
            runtime,
            slots: Arc::new(Mutex::new(Slots::default())),
        }
    }

    /// Queues `op` behind everything submitted for `key` so far and returns its result.
    pub(crate) fn submit<T, Fut>(&self, key: &str, op: Fut) -> StoreFuture<'static, T>
    where
        T: Send + 'static,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let (signal, done) = oneshot::channel::<()>();
        let (seq, previous) = {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            slots.next_seq += 1;
            let seq = slots.next_seq;
            let previous = slots.tails.insert(key.to_string(), Tail { seq, done });
            (seq, previous)
        };
        let slots = Arc::clone(&self.slots);
        let key = key.to_string();
        let task = self.runtime.spawn(async move {
            if let Some(previous) = previous {
                // Err means the previous task ended without signalling (runtime shutdown); it
                // is not running any more either way.
                let _ = previous.done.await;
            }
            let result = op.await;
            drop(signal);
            let mut slots = slots.lock().unwrap_or_else(|e| e.into_inner());
            if slots.tails.get(&key).is_some_and(|t| t.seq == seq) {
                slots.tails.remove(&key);
            }
            result
        });
        Box::pin(async move {
            task.await
                .unwrap_or_else(|e| Err(StoreError::Other(format!("store task ended early: {e}"))))
        })
    }

    /// How many keys have operations queued or running (for tests).
    #[cfg(test)]
    pub(crate) fn busy_keys(&self) -> usize {
        self.slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .tails
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_key_runs_in_submission_order_even_when_futures_are_dropped() {
        let q = KeyedQueue::new(Handle::current());
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut kept = Vec::new();
        for i in 0..100u64 {
            let log = Arc::clone(&log);
            let f = q.submit("g", async move {
                // Later operations are quicker, so any overlap would reorder the log.
                tokio::time::sleep(Duration::from_micros(100 - i)).await;
                log.lock().expect("log").push(i);
                Ok(i)
            });
            if i % 3 == 0 {
                drop(f);
            } else {
                kept.push((i, f));
            }
        }
        for (i, f) in kept.into_iter().rev() {
            assert_eq!(f.await, Ok(i));
        }
        let last = q.submit("g", async { Ok(()) });
        last.await.expect("last");
        assert_eq!(*log.lock().expect("log"), (0..100).collect::<Vec<_>>());
        assert_eq!(q.busy_keys(), 0);
    }

    #[tokio::test]
    async fn keys_do_not_wait_for_each_other() {
        let q = KeyedQueue::new(Handle::current());
        let (tx, rx) = oneshot::channel::<()>();
        let blocked = q.submit("a", async move {
            let _ = rx.await;
            Ok(1)
        });
        assert_eq!(q.submit("b", async { Ok(2) }).await, Ok(2));
        tx.send(()).expect("a still waits");
        assert_eq!(blocked.await, Ok(1));
    }
}
