//! Group ownership leases on the SeaweedFS filer's lock service (issue 15, docs/ARCHITECTURE.md
//! "Ownership leases"). Rendezvous hashing only says which kelp *should* coordinate a group; the
//! lease says which one *may*. Group ids hash into a fixed number of buckets; each bucket is one
//! named lease in the filer (`DistributedLock`), so the lease traffic does not grow with the
//! number of groups.
//!
//! - `machine.rs`: the rules, sans-IO (when a lease may be served, when it ends).
//! - `client.rs`: the filer's gRPC lock calls (generated from `proto/filer_lock.proto`).
//! - `driver.rs`: the task that renews held leases, takes the preferred ones and gives back the
//!   others, and publishes every change here.
//! - [`Leases`]: what the rest of kelp reads: per bucket, the term and the window in which it may
//!   serve. The coordinator shell checks it before every call, arms a timer at the next deadline,
//!   and acknowledges releases so a lease is given back only after its groups were dropped.

mod client;
mod driver;
mod machine;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::watch;

pub use client::LockClient;
pub use driver::{spawn, DriverConfig};
pub use machine::{Answer, Ask, Change, Lease, Loss, Sentinel, Timing};

use crate::peers::hash;

/// Buckets the group ids hash into (`--lease-buckets`): 32 leases for any number of groups.
pub const DEFAULT_BUCKETS: u32 = 32;
/// Lease time asked of the filer (`--lease-ttl-secs`).
pub const DEFAULT_TTL_SECS: u64 = 2;
/// The shell stops serving this long before a lease's deadline, so that the work of one wake-up
/// of the coordinator never runs past it.
pub const GUARD: Duration = Duration::from_millis(50);

/// One bucket's lease as the shell sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Window {
    /// One more per fresh take; 0 before the first.
    pub term: u64,
    /// Served from then (`None`: not held, or held and waiting for the round to confirm).
    pub from: Option<Instant>,
    /// Served until then (`None`: not held).
    pub until: Option<Instant>,
}

impl Window {
    /// Whether the bucket may be served at `now` (with the guard before the deadline).
    pub fn servable(&self, now: Instant) -> bool {
        match (self.from, self.until) {
            (Some(from), Some(until)) => now >= from && now + GUARD < until,
            _ => false,
        }
    }
}

/// Every bucket's lease, as the driver last published it.
pub struct Leases {
    buckets: u32,
    windows: Mutex<Vec<Window>>,
    /// Bumped on every publication.
    version: watch::Sender<u64>,
    /// The last version the coordinator shell has acted on (released what it ended).
    acted: watch::Sender<u64>,
}

impl Leases {
    /// A table of `buckets` leases, none held.
    pub fn new(buckets: u32) -> Leases {
        let buckets = buckets.max(1);
        Leases {
            buckets,
            windows: Mutex::new(vec![Window::default(); buckets as usize]),
            version: watch::channel(0).0,
            acted: watch::channel(0).0,
        }
    }

    /// Every bucket held for good, in term 1: for tests of the shell and for the in-memory store,
    /// where no other kelp can serve the groups.
    pub fn granted(buckets: u32) -> Leases {
        let leases = Leases::new(buckets);
        let now = Instant::now();
        let forever = now + Duration::from_secs(100 * 365 * 24 * 3600);
        leases.publish(
            (0..leases.buckets)
                .map(|b| {
                    (
                        b,
                        Window {
                            term: 1,
                            from: Some(now),
                            until: Some(forever),
                        },
                    )
                })
                .collect(),
        );
        leases
    }

    pub fn buckets(&self) -> u32 {
        self.buckets
    }

    /// The bucket of `group`.
    pub fn bucket_of(&self, group: &str) -> u32 {
        hash::bucket(group, self.buckets)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Window>> {
        self.windows.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn window(&self, bucket: u32) -> Window {
        self.lock()
            .get(bucket as usize)
            .copied()
            .unwrap_or_default()
    }

    /// The term in which `group` may be served at `now`, if it may.
    pub fn servable(&self, group: &str, now: Instant) -> Option<u64> {
        let w = self.window(self.bucket_of(group));
        w.servable(now).then_some(w.term)
    }

    /// Number of buckets held now (servable or waiting).
    pub fn held(&self) -> usize {
        self.lock().iter().filter(|w| w.until.is_some()).count()
    }

    /// The next instant after `now` at which some bucket becomes servable or stops being so.
    pub fn next_change(&self, now: Instant) -> Option<Instant> {
        self.lock()
            .iter()
            .flat_map(|w| [w.from, w.until.map(|u| u.checked_sub(GUARD).unwrap_or(u))])
            .flatten()
            .filter(|&t| t > now)
            .min()
    }

    /// Installs new windows for some buckets and tells the subscribers; returns the version.
    pub fn publish(&self, changed: Vec<(u32, Window)>) -> u64 {
        {
            let mut windows = self.lock();
            for (b, w) in changed {
                if let Some(slot) = windows.get_mut(b as usize) {
                    *slot = w;
                }
            }
        }
        let mut version = 0;
        self.version.send_modify(|v| {
            *v += 1;
            version = *v;
        });
        version
    }

    /// Publications from now on.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// The version of the last publication (bumped by every `publish`; what the shell then acts
    /// on and acknowledges with `acted`).
    pub fn version(&self) -> u64 {
        *self.version.borrow()
    }

    /// The shell acted on `version` (released every group whose lease it ended).
    pub fn acted(&self, version: u64) {
        self.acted.send_if_modified(|v| {
            let newer = version > *v;
            if newer {
                *v = version;
            }
            newer
        });
    }

    /// Waits (at most `limit`) until the shell has acted on `version`.
    pub async fn wait_acted(&self, version: u64, limit: Duration) -> bool {
        let mut rx = self.acted.subscribe();
        tokio::time::timeout(limit, rx.wait_for(|v| *v >= version))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_is_served_from_its_start_until_a_guard_before_its_deadline() {
        let t0 = Instant::now();
        let w = Window {
            term: 3,
            from: Some(t0 + Duration::from_millis(100)),
            until: Some(t0 + Duration::from_millis(1000)),
        };
        assert!(!w.servable(t0));
        assert!(w.servable(t0 + Duration::from_millis(100)));
        assert!(w.servable(t0 + Duration::from_millis(949)));
        assert!(!w.servable(t0 + Duration::from_millis(950)));
        assert!(!Window::default().servable(t0));
    }

    #[test]
    fn the_table_names_the_term_of_a_servable_group_and_the_next_change() {
        let leases = Leases::new(4);
        let t0 = Instant::now();
        let b = leases.bucket_of("g");
        assert_eq!(leases.servable("g", t0), None);
        let v = leases.publish(vec![(
            b,
            Window {
                term: 2,
                from: Some(t0),
                until: Some(t0 + Duration::from_secs(1)),
            },
        )]);
        assert_eq!(v, 1);
        assert_eq!(leases.servable("g", t0), Some(2));
        assert_eq!(leases.held(), 1);
        assert_eq!(
            leases.next_change(t0),
            Some(t0 + Duration::from_secs(1) - GUARD)
        );
        let always = Leases::granted(4);
        let now = Instant::now();
        assert!((0..100).all(|i| always.servable(&format!("g{i}"), now) == Some(1)));
    }
}
