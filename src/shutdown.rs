//! Graceful shutdown: on SIGTERM kelp stops accepting, lets each connection answer what it has in
//! flight and then closes it (so a group's members reconnect and rejoin elsewhere), and exits when
//! every connection is gone or `--drain-timeout-ms` has passed, whichever comes first.
//!
//! One `Shutdown` is shared by the accept loops and the connections. It only signals and counts;
//! it never closes anything itself.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

#[derive(Clone)]
pub struct Shutdown {
    draining: Arc<watch::Sender<bool>>,
    live: Arc<Live>,
}

#[derive(Default)]
struct Live {
    count: AtomicUsize,
    changed: Notify,
}

/// Held by each connection task while it runs (see `Shutdown::track`).
pub struct Tracked(Arc<Live>);

impl Drop for Tracked {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::AcqRel);
        self.0.changed.notify_waiters();
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    pub fn new() -> Self {
        Shutdown {
            draining: Arc::new(watch::channel(false).0),
            live: Arc::new(Live::default()),
        }
    }

    /// Starts the drain (idempotent).
    pub fn begin(&self) {
        self.draining.send_replace(true);
    }

    pub fn is_draining(&self) -> bool {
        *self.draining.borrow()
    }

    /// Resolves once the drain has begun.
    pub async fn draining(&self) {
        let mut rx = self.draining.subscribe();
        let _ = rx.wait_for(|draining| *draining).await;
    }

    /// Counts a connection as live until the returned guard is dropped.
    pub fn track(&self) -> Tracked {
        self.live.count.fetch_add(1, Ordering::AcqRel);
        Tracked(self.live.clone())
    }

    /// Connections live now.
    pub fn live(&self) -> usize {
        self.live.count.load(Ordering::Acquire)
    }

    /// Waits until no connection is live, at most `timeout`. Returns how many are still live.
    pub async fn wait_idle(&self, timeout: Duration) -> usize {
        let wait = async {
            loop {
                let changed = self.live.changed.notified();
                if self.live() == 0 {
                    return;
                }
                changed.await;
            }
        };
        let _ = tokio::time::timeout(timeout, wait).await;
        self.live()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drain_waits_for_tracked_connections_and_no_longer() {
        let shutdown = Shutdown::new();
        assert!(!shutdown.is_draining());
        let a = shutdown.track();
        let b = shutdown.track();
        assert_eq!(shutdown.live(), 2);
        let waiter = {
            let s = shutdown.clone();
            tokio::spawn(async move { s.draining().await })
        };
        shutdown.begin();
        waiter.await.unwrap();
        assert!(shutdown.is_draining());
        drop(a);
        let closer = tokio::spawn(async move { drop(b) });
        assert_eq!(shutdown.wait_idle(Duration::from_secs(30)).await, 0);
        closer.await.unwrap();
    }

    #[tokio::test]
    async fn a_stuck_connection_is_given_up_at_the_timeout() {
        let shutdown = Shutdown::new();
        let _stuck = shutdown.track();
        shutdown.begin();
        assert_eq!(shutdown.wait_idle(Duration::from_millis(50)).await, 1);
    }
}
