//! Topic ids (KIP-516) for a gateway that has none: the SeaweedFS gateway serves Metadata v0–7, so
//! every topic would have the all-zero id, while KIP-848 assignments and Metadata v10+ name topics
//! by id. This registry gives every topic the gateway lists a stable id every kelp agrees on and
//! that changes when the topic is deleted and created again (`id.rs`: derived from the name and
//! the topic's incarnation, read from the filer by `source.rs`; nothing is written). A task reads
//! every topic from the gateway every `--topic-metadata-interval-ms` (or sooner, `refresh_soon`)
//! and publishes the table (`subscribe`); `metadata.rs` answers Metadata v8+ from the gateway's
//! highest version with these ids. Must not run on a client's request path except to learn the
//! id of a topic a Metadata answer names for the first time (then only that connection waits).
//!
//! Without `--filer` the incarnation is local to this kelp: a topic's id moves on when this kelp
//! sees it vanish from the gateway's Metadata, so kelps without a filer agree only on topics none
//! of them saw recreated, and a restarted kelp cannot tell that a topic was recreated meanwhile.

pub mod id;
pub mod metadata;
pub mod source;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use futures::stream::{self, StreamExt};
use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse};
use prometheus::{IntCounterVec, Opts, Registry};
use tokio::sync::{watch, Notify};
use uuid::Uuid;

use crate::backend::Backend;
use crate::group::consumer::Topics;
use id::{topic_id, Incarnation};
use source::FilerTopics;

/// Shortest time between two refreshes (`refresh_soon` is coalesced and rate-bounded by it).
const MIN_GAP: Duration = Duration::from_millis(500);
/// The highest Metadata version kelp asks the gateway in (the gateway's highest, 4.48: 7).
pub const GATEWAY_METADATA_MAX: i16 = 7;
/// Most `topic.conf` reads in flight at once.
const FILER_CONCURRENCY: usize = 8;

/// The handle: cheap to clone, shared by the connections, the refresh task and the coordinator.
#[derive(Clone)]
pub struct TopicIds {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Arc<Backend>,
    filer: Option<FilerTopics>,
    interval: Duration,
    table: ArcSwap<Topics>,
    tx: watch::Sender<Arc<Topics>>,
    state: Mutex<State>,
    wake: Notify,
    errors: IntCounterVec,
}

#[derive(Default)]
struct State {
    /// With a filer: the id of each topic and the listing stamp it was derived under.
    known: HashMap<String, (Option<String>, Uuid)>,
    /// Without a filer: how many times each topic was seen to vanish.
    vanished: HashMap<String, u64>,
    /// The topics of the last full refresh.
    last_full: HashSet<String>,
    /// Topics learned from Metadata answers, with the learning's sequence number: a refresh that
    /// began before keeps them (its own read of the gateway may predate their creation).
    learned: HashMap<String, u64>,
    seq: u64,
}

impl TopicIds {
    /// A registry reading topics from `backend`, incarnations from the filer at `filer_url`
    /// (`--filer`) or, without one, from what this kelp sees. The refresh task is `run`.
    pub fn new(
        backend: Arc<Backend>,
        filer_url: Option<&str>,
        interval: Duration,
        registry: &Registry,
    ) -> Result<TopicIds, String> {
        let filer = match filer_url {
            Some(url) => {
                let settings = crate::store::filer_http::HttpSettings {
                    timeout: Duration::from_secs(5),
                    read_attempts: 2,
                    max_in_flight: FILER_CONCURRENCY,
                    page_size: 1000,
                    max_pages: 1000,
                };
                let http = crate::store::filer_http::FilerHttp::new(url, settings)
                    .map_err(|e| format!("--filer {url:?}: {e}"))?;
                Some(FilerTopics::new(http))
            }
            None => None,
        };
        let errors = IntCounterVec::new(
            Opts::new(
                "kelp_topic_metadata_refresh_errors_total",
                "Topic-id table refreshes that failed, by what failed (gateway Metadata, filer read)",
            ),
            &["source"],
        )
        .expect("static metric");
        let _ = registry.register(Box::new(errors.clone()));
        for source in ["gateway", "filer"] {
            errors.with_label_values(&[source]); // Exported at 0 from the start.
        }
        let empty = Arc::new(Topics::default());
        let (tx, _) = watch::channel(empty.clone());
        Ok(TopicIds {
            inner: Arc::new(Inner {
                backend,
                filer,
                interval,
                table: ArcSwap::new(empty),
                tx,
                state: Mutex::new(State::default()),
                wake: Notify::new(),
                errors,
            }),
        })
    }

    /// The latest full table; a new value is published only when the table changed.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Topics>> {
        self.inner.tx.subscribe()
    }

    /// Asks for an early refresh (e.g. a heartbeat subscribed to a topic not in the table).
    /// Coalesced: one refresh runs at a time, at most one every 500 ms.
    pub fn refresh_soon(&self) {
        self.inner.wake.notify_one();
    }

    pub fn id_of(&self, name: &str) -> Option<Uuid> {
        self.inner.table.load().get(name).map(|t| t.id)
    }

    pub fn name_of(&self, id: Uuid) -> Option<String> {
        self.inner.table.load().name(id).map(str::to_string)
    }

    /// The table as it is now.
    pub fn table(&self) -> Arc<Topics> {
        self.inner.table.load_full()
    }

    /// The refresh task: a full refresh at once, then every interval or on `refresh_soon`.
    pub async fn run(self) {
        loop {
            self.refresh().await;
            tokio::time::sleep(MIN_GAP).await;
            let rest = self.inner.interval.saturating_sub(MIN_GAP);
            tokio::select! {
                _ = tokio::time::sleep(rest) => {}
                _ = self.inner.wake.notified() => {}
            }
        }
    }

    /// One full refresh: every topic from the gateway, ids for all of them, table published.
    pub async fn refresh(&self) {
        let inner = &self.inner;
        let started = lock(&inner.state).seq;
        let topics = match gateway_topics(&inner.backend).await {
            Ok(topics) => topics,
            Err(e) => {
                inner.errors.with_label_values(&["gateway"]).inc();
                tracing::debug!(error = %e, "topic ids: Metadata from the gateway failed");
                return;
            }
        };
        let listing = match &inner.filer {
            Some(filer) => match filer.list().await {
                Ok(list) => Some(list.into_iter().collect::<HashMap<_, _>>()),
                Err(e) => {
                    inner.errors.with_label_values(&["filer"]).inc();
                    tracing::debug!(error = %e, "topic ids: listing the topics in the filer failed");
                    None
                }
            },
            None => None,
        };
        self.install(started, topics, listing).await;
    }

    /// The second half of a refresh that began at learning sequence `started`: `topics` as the
    /// gateway lists them, `listing` as the filer does (`None`: no filer, or it failed).
    async fn install(
        &self,
        started: u64,
        topics: Vec<(String, i32)>,
        listing: Option<HashMap<String, String>>,
    ) {
        let inner = &self.inner;
        let names: Vec<String> = topics.iter().map(|(n, _)| n.clone()).collect();
        if inner.filer.is_none() {
            let mut state = lock(&inner.state);
            let now: HashSet<String> = names.iter().cloned().collect();
            let gone: Vec<String> = state.last_full.difference(&now).cloned().collect();
            for name in gone {
                *state.vanished.entry(name).or_default() += 1;
            }
            state.last_full = now;
        }
        let ids = self.ids_for(&names, listing.as_ref()).await;
        let mut entries: Vec<(String, Uuid, i32)> = topics
            .into_iter()
            .filter_map(|(name, partitions)| Some((name.clone(), *ids.get(&name)?, partitions)))
            .collect();
        let keep: HashSet<String> = {
            let mut state = lock(&inner.state);
            state.learned.retain(|_, seq| *seq > started);
            let listed: HashSet<&String> = names.iter().collect();
            let learned: HashSet<String> = state.learned.keys().cloned().collect();
            state
                .known
                .retain(|n, _| listed.contains(n) || learned.contains(n));
            learned
        };
        let current = inner.table.load_full();
        for name in keep {
            if entries.iter().all(|(n, _, _)| *n != name) {
                if let Some(t) = current.get(&name) {
                    entries.push((name, t.id, t.partitions));
                }
            }
        }
        self.publish(Topics::new(entries));
    }

    /// Ids for topics a Metadata answer names that the table does not have yet: derived as the
    /// refresh derives them (one `topic.conf` read each with a filer), added to the table.
    pub async fn learn(&self, topics: Vec<(String, i32)>) -> HashMap<String, Uuid> {
        let names: Vec<String> = topics.iter().map(|(n, _)| n.clone()).collect();
        let ids = self.ids_for(&names, None).await;
        {
            let mut state = lock(&self.inner.state);
            state.seq += 1;
            let seq = state.seq;
            for name in ids.keys() {
                state.learned.insert(name.clone(), seq);
            }
        }
        let current = self.inner.table.load_full();
        let mut entries: Vec<(String, Uuid, i32)> = current
            .iter()
            .map(|(n, t)| (n.to_string(), t.id, t.partitions))
            .collect();
        for (name, partitions) in topics {
            if let (Some(id), None) = (ids.get(&name), current.get(&name)) {
                entries.push((name, *id, partitions));
            }
        }
        self.publish(Topics::new(entries));
        ids
    }

    /// The id of each name (left out: a name whose incarnation could not be read).
    async fn ids_for(
        &self,
        names: &[String],
        listing: Option<&HashMap<String, String>>,
    ) -> HashMap<String, Uuid> {
        let inner = &self.inner;
        let Some(filer) = &inner.filer else {
            let state = lock(&inner.state);
            return names
                .iter()
                .map(|n| {
                    let n_vanished = state.vanished.get(n).copied().unwrap_or(0);
                    (n.clone(), topic_id(n, &Incarnation::Local(n_vanished)))
                })
                .collect();
        };
        let mut out = HashMap::new();
        let mut to_read = Vec::new();
        {
            let state = lock(&inner.state);
            for name in names {
                let stamp = listing.and_then(|l| l.get(name)).cloned();
                match state.known.get(name) {
                    // Without a listing (learning, or the listing failed), a known id stands.
                    Some((seen, id)) if listing.is_none() || *seen == stamp => {
                        out.insert(name.clone(), *id);
                    }
                    _ => to_read.push((name.clone(), stamp)),
                }
            }
        }
        let read: Vec<_> = stream::iter(to_read)
            .map(|(name, stamp)| async move {
                let incarnation = filer.incarnation(&name).await;
                (name, stamp, incarnation)
            })
            .buffer_unordered(FILER_CONCURRENCY)
            .collect()
            .await;
        let mut state = lock(&inner.state);
        for (name, stamp, incarnation) in read {
            match incarnation {
                Ok(incarnation) => {
                    let id = topic_id(&name, &incarnation);
                    state.known.insert(name.clone(), (stamp, id));
                    out.insert(name, id);
                }
                Err(e) => {
                    inner.errors.with_label_values(&["filer"]).inc();
                    tracing::debug!(topic = %name, error = %e, "topic ids: reading topic.conf failed");
                    if let Some((_, id)) = state.known.get(&name) {
                        out.insert(name, *id);
                    }
                }
            }
        }
        out
    }

    /// Replaces the table and tells the subscribers, if it changed.
    fn publish(&self, new: Topics) {
        let inner = &self.inner;
        inner.tx.send_if_modified(|current| {
            if current.iter().eq(new.iter()) {
                return false;
            }
            let new = Arc::new(new);
            inner.table.store(new.clone());
            *current = new;
            true
        });
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// The Metadata version kelp asks the gateway in: its highest, at most v7, at least v1 (v0
/// cannot ask for every topic).
pub fn gateway_version(backend: &Backend) -> i16 {
    backend
        .highest(ApiKey::Metadata)
        .map_or(GATEWAY_METADATA_MAX, |max| max.min(GATEWAY_METADATA_MAX))
        .max(1)
}

/// The gateway's Metadata version kelp asks in for a client's Metadata `version` above what the
/// gateway serves (its highest; v7 when it has not answered ApiVersions yet), or `None` when the
/// gateway serves `version` (forwarded as it is).
pub fn translated_version(backend: &Backend, version: i16) -> Option<i16> {
    let max = backend
        .highest(ApiKey::Metadata)
        .unwrap_or(GATEWAY_METADATA_MAX);
    (version > max).then_some(max.max(1))
}

/// Every topic the gateway lists without an error, with its partition count.
async fn gateway_topics(backend: &Backend) -> Result<Vec<(String, i32)>, String> {
    let version = gateway_version(backend);
    let request = MetadataRequest::default()
        .with_topics(None)
        .with_allow_auto_topic_creation(false);
    let response: MetadataResponse =
        crate::passthrough::gateway::call(backend, ApiKey::Metadata, version, &request).await?;
    Ok(response
        .topics
        .into_iter()
        .filter(|t| t.error_code == 0)
        .filter_map(|t| Some((t.name?.0.to_string(), t.partitions.len() as i32)))
        .collect())
}

#[cfg(test)]
mod tests;
