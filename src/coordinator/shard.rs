//! The shell's side of sharing groups with other kelps (README §5, `peers`): the coordinator
//! serves only the groups it adopted. A call naming a group it has not adopted waits while the
//! group is loaded from the store (after the view has settled, see `peers`), then runs; when the
//! view moves a group elsewhere, the coordinator releases it.

use std::collections::{BTreeSet, HashMap};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use futures::Future;
use tokio::sync::watch;

use super::durable::{self, Clock};
use crate::group::{named_groups, Call, Coordinator, LoadedGroup, Output};
use crate::metrics::Metrics;
use crate::peers::{Owner, Peers, View};
use crate::store::{Store, StoreError};

/// Calls waiting for groups to load, at most; beyond it a call runs at once (and is refused).
const MAX_WAITING: usize = 10_000;
/// Attempts to load one group while the store fails, 0.2 s apart and doubling (about 3 s in all),
/// before the calls waiting on it are refused (NOT_COORDINATOR: clients retry).
const LOAD_ATTEMPTS: u32 = 5;

type Load<'s> =
    Pin<Box<dyn Future<Output = (String, Result<LoadedGroup, StoreError>)> + Send + 's>>;

pub(super) struct Shard<'s> {
    peers: Arc<Peers>,
    store: &'s dyn Store,
    metrics: Arc<Metrics>,
    /// Calls and the groups each still waits for.
    waiting: Vec<(Call, BTreeSet<String>)>,
    /// Groups being loaded, with the attempts made so far.
    loading: HashMap<String, u32>,
    loads: FuturesUnordered<Load<'s>>,
}

impl<'s> Shard<'s> {
    pub(super) fn new(peers: Arc<Peers>, store: &'s dyn Store, metrics: Arc<Metrics>) -> Self {
        Shard {
            peers,
            store,
            metrics,
            waiting: Vec::new(),
            loading: HashMap::new(),
            loads: FuturesUnordered::new(),
        }
    }

    pub(super) fn is_loading(&self) -> bool {
        !self.loads.is_empty()
    }

    /// The call, if it can run now; otherwise it waits for its groups to load.
    pub(super) fn admit(&mut self, coordinator: &Coordinator, call: Call) -> Option<Call> {
        let missing: BTreeSet<String> = named_groups(&call.request)
            .into_iter()
            .filter(|g| !coordinator.owns(g))
            .map(str::to_string)
            .collect();
        if missing.is_empty() || self.waiting.len() >= MAX_WAITING {
            return Some(call);
        }
        for group in &missing {
            if !self.loading.contains_key(group) {
                self.loading.insert(group.clone(), 1);
                self.start_load(group.clone(), None);
            }
        }
        self.waiting.push((call, missing));
        None
    }

    /// Loads `group` once the view has settled (and `backoff` has passed).
    fn start_load(&mut self, group: String, backoff: Option<Duration>) {
        let view = self.peers.view();
        let now = Instant::now();
        let settled_at = view.since + self.peers.settle();
        let mut at = backoff.map(|b| now + b);
        if !view.settled(self.peers.settle(), now) {
            at = Some(at.map_or(settled_at, |a| a.max(settled_at)));
        }
        let wait = at;
        let store = self.store;
        self.loads.push(Box::pin(async move {
            if let Some(at) = wait {
                tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
            }
            let result = durable::load_one(store, group.clone()).await;
            (group, result)
        }));
    }

    /// The next finished load (pending forever when none runs).
    pub(super) async fn next_load(&mut self) -> (String, Result<LoadedGroup, StoreError>) {
        match self.loads.next().await {
            Some(done) => done,
            None => std::future::pending().await,
        }
    }

    /// A load finished: adopt the group if it is still this kelp's, then return the calls that
    /// waited only on it (refused by the coordinator if it was not adopted).
    pub(super) fn loaded(
        &mut self,
        coordinator: &mut Coordinator,
        clock: &Clock,
        group: String,
        result: Result<LoadedGroup, StoreError>,
        out: &mut Vec<Output>,
    ) -> Vec<Call> {
        let view = self.peers.view();
        if !view.settled(self.peers.settle(), Instant::now()) {
            // The view changed while this load ran: what it read may predate the old owner's
            // last writes. Read again once the new view has settled.
            self.start_load(group, None);
            return Vec::new();
        }
        let attempts = self.loading.get(&group).copied().unwrap_or(1);
        let owner = view.owner(self.peers.me(), &group);
        if let (Owner::Me, Err(e)) = (&owner, &result) {
            if e.is_retriable() && attempts < LOAD_ATTEMPTS {
                let backoff = Duration::from_millis(200 << (attempts - 1));
                tracing::debug!(group = %group, error = %e, attempt = attempts, "cannot load the group yet; retrying");
                self.loading.insert(group.clone(), attempts + 1);
                self.start_load(group, Some(backoff));
                return Vec::new();
            }
        }
        self.loading.remove(&group);
        match (owner, result) {
            (Owner::Me, Ok(loaded)) => {
                let known = durable::known(&loaded);
                if known {
                    self.metrics
                        .ownership_moves
                        .with_label_values(&["in"])
                        .inc();
                }
                tracing::info!(group = %group, from_store = known, members = loaded.record.as_ref().map_or(0, |r| r.members.len()), "adopted the group");
                coordinator.adopt(clock.now(), &group, known.then_some(loaded), out);
            }
            (Owner::Me, Err(e)) => {
                tracing::warn!(group = %group, error = %e, attempts, "cannot load the group from the store; its requests get NOT_COORDINATOR and are retried");
            }
            (Owner::Peer(p), _) => {
                tracing::info!(group = %group, owner = %p, "the group moved to another kelp while it loaded");
            }
        }
        let mut ready = Vec::new();
        let mut still = Vec::new();
        for (call, mut missing) in std::mem::take(&mut self.waiting) {
            missing.remove(&group);
            if missing.is_empty() {
                ready.push(call);
            } else {
                still.push((call, missing));
            }
        }
        self.waiting = still;
        ready
    }

    /// Every view from now on.
    pub(super) fn views(&self) -> watch::Receiver<Arc<View>> {
        self.peers.subscribe()
    }

    /// The view changed: release every group that is now another kelp's.
    pub(super) fn view_changed(
        &mut self,
        coordinator: &mut Coordinator,
        clock: &Clock,
        view: Arc<View>,
        out: &mut Vec<Output>,
    ) {
        let lost: Vec<String> = coordinator
            .owned()
            .filter(|g| view.owner(self.peers.me(), g) != Owner::Me)
            .map(str::to_string)
            .collect();
        for group in lost {
            tracing::info!(group = %group, owner = ?view.owner(self.peers.me(), &group), "released the group to its new owner");
            self.metrics
                .ownership_moves
                .with_label_values(&["out"])
                .inc();
            coordinator.release(clock.now(), &group, out);
        }
    }
}
