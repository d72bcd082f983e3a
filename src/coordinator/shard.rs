//! The shell's side of fenced ownership (README §5, `lease`, `peers`): the coordinator serves a
//! group only while this kelp holds the lease of the group's bucket, in the term it adopted the
//! group in. A call naming a group it has not adopted waits while the group is claimed and loaded
//! from the store (or, for a bucket this kelp should hold but does not yet, until the lease comes,
//! at most `wait`), then runs; a call that waited too long is answered COORDINATOR_NOT_AVAILABLE.
//! When a lease ends, the groups of its bucket are released before the lease can be given back or
//! granted to anyone else. A bucket newly served has all its stored groups loaded.

use std::collections::{BTreeSet, HashMap};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use futures::Future;

use super::durable::{self, Clock, COORDINATOR_NOT_AVAILABLE};
use crate::group::{self, named_groups, refusal, Call, Coordinator, LoadedGroup, Output};
use crate::lease::Leases;
use crate::metrics::Metrics;
use crate::peers::{Owner, Peers};
use crate::store::{Store, StoreError};

/// Calls waiting for groups to load, at most; beyond it a call runs at once (and is refused).
const MAX_WAITING: usize = 10_000;
/// Attempts to load one group while the store fails, 0.2 s apart and doubling (about 3 s in all),
/// before the calls waiting on it are refused (COORDINATOR_NOT_AVAILABLE: clients retry).
const LOAD_ATTEMPTS: u32 = 5;

/// What a background store operation of the shard produced.
pub(super) enum Finished {
    /// A group claimed and loaded in `term`.
    Group {
        group: String,
        term: u64,
        result: Result<LoadedGroup, StoreError>,
    },
    /// The store's group ids, listed for the buckets that became servable.
    Listed {
        buckets: BTreeSet<u32>,
        result: Result<Vec<String>, StoreError>,
    },
}

type Work<'s> = Pin<Box<dyn Future<Output = Finished> + Send + 's>>;

struct Waiting {
    call: Call,
    missing: BTreeSet<String>,
    until: Instant,
}

pub(super) struct Shard<'s> {
    peers: Arc<Peers>,
    leases: Arc<Leases>,
    store: &'s dyn Store,
    metrics: Arc<Metrics>,
    /// How long a call waits for its groups' leases and loads.
    wait: Duration,
    /// Sorted by `until`: only `admit` pushes (`now + wait`, its caller's `Instant::now()`), and
    /// the removals keep the order.
    waiting: Vec<Waiting>,
    /// Groups being loaded, with the attempts made so far.
    loading: HashMap<String, u32>,
    /// The term each adopted group was adopted in.
    adopted: HashMap<String, u64>,
    /// Per bucket, the term the shard last saw servable (to load a newly served bucket once).
    served: HashMap<u32, u64>,
    /// When `reconcile` must run again at the latest (a lease window closing or opening).
    due: Option<Instant>,
    /// Calls handed to the coordinator, by token: the groups they named, to check when their
    /// reply leaves that it left under the same lease (`replied`).
    running: HashMap<group::Token, Vec<String>>,
    work: FuturesUnordered<Work<'s>>,
}

impl<'s> Shard<'s> {
    pub(super) fn new(
        peers: Arc<Peers>,
        leases: Arc<Leases>,
        store: &'s dyn Store,
        metrics: Arc<Metrics>,
        wait: Duration,
    ) -> Self {
        Shard {
            peers,
            leases,
            store,
            metrics,
            wait,
            waiting: Vec::new(),
            loading: HashMap::new(),
            adopted: HashMap::new(),
            served: HashMap::new(),
            due: None,
            running: HashMap::new(),
            work: FuturesUnordered::new(),
        }
    }

    pub(super) fn leases(&self) -> &Arc<Leases> {
        &self.leases
    }

    pub(super) fn is_busy(&self) -> bool {
        !self.work.is_empty()
    }

    /// The next instant the shard must look again: a lease window opening or closing, or a
    /// waiting call's limit.
    pub(super) fn next_deadline(&self, now: Instant) -> Option<Instant> {
        // `waiting` is sorted by `until`, so the first is the earliest.
        let waits = self.waiting.first().map(|w| w.until);
        [self.leases.next_change(now), waits]
            .into_iter()
            .flatten()
            .min()
    }

    /// The term `group`'s writes are issued in (0 when it is not adopted).
    pub(super) fn term_of(&self, group: &str) -> u64 {
        self.adopted.get(group).copied().unwrap_or(0)
    }

    /// Whether a write of `group` issued in `term` may be acknowledged at `now`: the lease that
    /// issued it is still held and servable, so nobody else can have claimed the group since.
    pub(super) fn acknowledgeable(&self, group: &str, term: u64, now: Instant) -> bool {
        term != 0 && self.leases.servable(group, now) == Some(term)
    }

    /// Whether `group`'s bucket was served by this kelp in a term that has ended, and is not
    /// served now.
    fn lapsed(&self, group: &str, now: Instant) -> bool {
        let bucket = self.leases.bucket_of(group);
        self.served.contains_key(&bucket) && !self.leases.window(bucket).servable(now)
    }

    /// The call, if it can run now (`Ok(Some)`); `Ok(None)` while it waits for its groups' leases
    /// and loads; `Err` with its refusal when it must not be served (see `lapsed`).
    pub(super) fn admit(
        &mut self,
        coordinator: &Coordinator,
        call: Call,
        now: Instant,
    ) -> Result<Option<Call>, Vec<Output>> {
        let view = self.peers.view();
        let mut missing = BTreeSet::new();
        // The named groups the coordinator owns: what `running` notes if the call runs now.
        let mut owned = Vec::new();
        for g in named_groups(&call.request) {
            let servable = self.leases.servable(g, now);
            let owns = coordinator.owns(g);
            if owns {
                owned.push(g);
            }
            if owns && servable == self.adopted.get(g).copied() {
                continue;
            }
            let preferred = view.owner(self.peers.me(), g) == Owner::Me;
            if servable.is_none() && self.lapsed(g, now) {
                // This kelp served the group's bucket and its lease ended: the call may have been
                // sent before that (read late after a pause) and served meanwhile by another
                // kelp. Refused, never held for the next term (the client retries).
                let mut out = Vec::new();
                refuse(call, &mut out);
                return Err(out);
            }
            if servable.is_some() || preferred {
                missing.insert(g.to_string());
            }
        }
        if missing.is_empty() || self.waiting.len() >= MAX_WAITING {
            // Adopted groups run; groups of other kelps are refused by the coordinator.
            self.note_running(call.token, owned);
            return Ok(Some(call));
        }
        for group in &missing {
            if self.leases.servable(group, now).is_some() && !self.loading.contains_key(group) {
                self.start_load(group.clone(), 1, None, now);
            }
        }
        self.waiting.push(Waiting {
            call,
            missing,
            until: now + self.wait,
        });
        Ok(None)
    }

    /// Notes a call the coordinator runs, with the adopted groups it names.
    fn running_call(&mut self, coordinator: &Coordinator, call: &Call) {
        let owned = named_groups(&call.request)
            .into_iter()
            .filter(|g| coordinator.owns(g));
        self.note_running(call.token, owned);
    }

    /// Notes call `token`, which the coordinator runs, with the named groups it owns (`owned`).
    fn note_running<'g>(&mut self, token: group::Token, owned: impl IntoIterator<Item = &'g str>) {
        let groups: Vec<String> = owned.into_iter().map(str::to_string).collect();
        if !groups.is_empty() {
            self.running.insert(token, groups);
        }
    }

    /// A reply leaves for call `token` at `now`. Unless it refuses the call (15, 16: nothing was
    /// served), every group the call named must still be servable in the term it was adopted
    /// in; time past a lease's deadline is counted in
    /// `kelp_lease_unleased_serving_seconds_total` (0 by construction: calls are admitted and
    /// groups released against the same table).
    pub(super) fn replied(&mut self, token: group::Token, refused: bool, now: Instant) {
        let Some(groups) = self.running.remove(&token) else {
            return;
        };
        if refused {
            return;
        }
        for g in groups {
            let window = self.leases.window(self.leases.bucket_of(&g));
            let same_term = self.adopted.get(&g) == Some(&window.term);
            if same_term && window.servable(now) {
                continue;
            }
            let past = window
                .until
                .map_or(Duration::ZERO, |u| now.saturating_duration_since(u));
            self.metrics
                .lease
                .unleased_serving
                .inc_by(past.as_secs_f64());
            tracing::error!(group = %g, past_deadline_ms = past.as_millis() as u64, "a reply left for a group this kelp no longer holds the lease of");
        }
    }

    /// Claims and loads `group` in the term its lease is servable in now (after `backoff`).
    fn start_load(&mut self, group: String, attempt: u32, backoff: Option<Duration>, now: Instant) {
        let Some(term) = self.leases.servable(&group, now) else {
            return;
        };
        self.loading.insert(group.clone(), attempt);
        let store = self.store;
        self.work.push(Box::pin(async move {
            if let Some(b) = backoff {
                tokio::time::sleep(b).await;
            }
            let result = durable::claim_one(store, group.clone()).await;
            Finished::Group {
                group,
                term,
                result,
            }
        }));
    }

    /// The next finished store operation (pending forever when none runs).
    pub(super) async fn next(&mut self) -> Finished {
        match self.work.next().await {
            Some(done) => done,
            None => std::future::pending().await,
        }
    }

    /// A store operation finished; returns the calls that can run now.
    pub(super) fn finished(
        &mut self,
        coordinator: &mut Coordinator,
        clock: &Clock,
        done: Finished,
        out: &mut Vec<Output>,
    ) -> Vec<Call> {
        match done {
            Finished::Listed { buckets, result } => {
                self.listed(buckets, result);
                Vec::new()
            }
            Finished::Group {
                group,
                term,
                result,
            } => {
                let ready = self.loaded(coordinator, clock, group, term, result, out);
                for call in &ready {
                    self.running_call(coordinator, call);
                }
                ready
            }
        }
    }

    fn listed(&mut self, buckets: BTreeSet<u32>, result: Result<Vec<String>, StoreError>) {
        let ids = match result {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the stored groups of newly served buckets; they load on their first request");
                return;
            }
        };
        let now = Instant::now();
        let mut started = 0usize;
        for id in ids {
            if buckets.contains(&self.leases.bucket_of(&id))
                && !self.adopted.contains_key(&id)
                && !self.loading.contains_key(&id)
            {
                self.start_load(id, 1, None, now);
                started += 1;
            }
        }
        if started > 0 {
            tracing::info!(groups = started, buckets = ?buckets, "loading the stored groups of newly served buckets");
        }
    }

    fn loaded(
        &mut self,
        coordinator: &mut Coordinator,
        clock: &Clock,
        group: String,
        term: u64,
        result: Result<LoadedGroup, StoreError>,
        out: &mut Vec<Output>,
    ) -> Vec<Call> {
        let now = Instant::now();
        let attempts = self.loading.remove(&group).unwrap_or(1);
        match self.leases.servable(&group, now) {
            Some(t) if t != term => {
                // The lease ended and came back while this ran: claim again in the new term.
                self.start_load(group, 1, None, now);
                return Vec::new();
            }
            None => {
                // Not servable any more: the waiting calls wait for the lease or their limit.
                return Vec::new();
            }
            Some(_) => {}
        }
        match result {
            Err(e) if e.is_retriable() && attempts < LOAD_ATTEMPTS => {
                let backoff = Duration::from_millis(200 << (attempts - 1));
                tracing::debug!(group = %group, error = %e, attempt = attempts, "cannot load the group yet; retrying");
                self.start_load(group, attempts + 1, Some(backoff), now);
                return Vec::new();
            }
            Err(e) => {
                tracing::warn!(group = %group, error = %e, attempts, "cannot load the group from the store; its requests get COORDINATOR_NOT_AVAILABLE and are retried");
                self.refuse_waiting_on(&group, out);
                return Vec::new();
            }
            Ok(loaded) => {
                let known = durable::known(&loaded);
                if known {
                    self.metrics
                        .ownership_moves
                        .with_label_values(&["in"])
                        .inc();
                }
                tracing::info!(group = %group, term, from_store = known, members = loaded.record.as_ref().map_or(0, |r| r.members.len()), "adopted the group");
                coordinator.adopt(clock.now(), &group, known.then_some(loaded), out);
                self.adopted.insert(group.clone(), term);
            }
        }
        self.ready_after(&group)
    }

    /// The waiting calls that waited only on `group`.
    fn ready_after(&mut self, group: &str) -> Vec<Call> {
        let mut ready = Vec::new();
        let mut still = Vec::new();
        for mut w in std::mem::take(&mut self.waiting) {
            w.missing.remove(group);
            if w.missing.is_empty() {
                ready.push(w.call);
            } else {
                still.push(w);
            }
        }
        self.waiting = still;
        ready
    }

    /// Answers COORDINATOR_NOT_AVAILABLE to every call waiting on `group`.
    fn refuse_waiting_on(&mut self, group: &str, out: &mut Vec<Output>) {
        let (refused, still): (Vec<Waiting>, Vec<Waiting>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|w| w.missing.contains(group));
        self.waiting = still;
        for w in refused {
            refuse(w.call, out);
        }
    }

    /// `reconcile`, if a lease window opened or closed since it last ran.
    pub(super) fn reconcile_if_due(
        &mut self,
        coordinator: &mut Coordinator,
        clock: &Clock,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        if self.due.is_some_and(|d| now >= d) {
            self.reconcile(coordinator, clock, now, out);
        }
    }

    /// Brings the coordinator in line with the leases at `now`: releases the groups whose lease
    /// ended (or changed term), loads newly served buckets and the groups calls wait for, and
    /// refuses calls that waited past their limit. Then tells the lease task it has acted.
    pub(super) fn reconcile(
        &mut self,
        coordinator: &mut Coordinator,
        clock: &Clock,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let version = self.leases.version();
        let ended: Vec<String> = self
            .adopted
            .iter()
            .filter(|(g, term)| self.leases.servable(g, now) != Some(**term))
            .map(|(g, _)| g.clone())
            .collect();
        for group in ended {
            self.adopted.remove(&group);
            tracing::info!(group = %group, "released the group: this kelp no longer holds its lease");
            self.metrics
                .ownership_moves
                .with_label_values(&["out"])
                .inc();
            coordinator.release(clock.now(), &group, out);
        }
        // Buckets served in a new term: load their stored groups.
        let mut fresh = BTreeSet::new();
        for b in 0..self.leases.buckets() {
            let w = self.leases.window(b);
            if w.servable(now) && self.served.get(&b) != Some(&w.term) {
                self.served.insert(b, w.term);
                fresh.insert(b);
            }
        }
        if !fresh.is_empty() {
            let store = self.store;
            self.work.push(Box::pin(async move {
                let result = store.list_groups().await;
                Finished::Listed {
                    buckets: fresh,
                    result,
                }
            }));
        }
        // Waiting calls: load what became servable; refuse what waited too long.
        let mut expired = Vec::new();
        let mut still = Vec::new();
        for w in std::mem::take(&mut self.waiting) {
            if now >= w.until || w.missing.iter().any(|g| self.lapsed(g, now)) {
                expired.push(w);
            } else {
                still.push(w);
            }
        }
        self.waiting = still;
        let wanted: BTreeSet<String> = self
            .waiting
            .iter()
            .flat_map(|w| w.missing.iter().cloned())
            .collect();
        for group in wanted {
            if !self.loading.contains_key(&group) && self.leases.servable(&group, now).is_some() {
                self.start_load(group, 1, None, now);
            }
        }
        for w in expired {
            tracing::debug!(groups = ?w.missing, "a call waited too long for its groups' leases; COORDINATOR_NOT_AVAILABLE");
            refuse(w.call, out);
        }
        self.due = self.leases.next_change(now);
        self.leases.acted(version);
    }
}

/// Answers a call COORDINATOR_NOT_AVAILABLE (15): retriable; the client asks again.
fn refuse(call: Call, out: &mut Vec<Output>) {
    out.push(Output::Reply {
        token: call.token,
        response: refusal(&call.request, call.api_version, COORDINATOR_NOT_AVAILABLE),
    });
}
