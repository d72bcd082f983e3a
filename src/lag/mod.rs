//! Consumer lag per group (issue 17): a background task that, every `--lag-interval-secs`, takes
//! the coordinator's groups (a `Snapshot` message to its actor) and the passthrough groups kelp
//! observes (their commits read back from the gateway), asks the gateway for log-end offsets with
//! one ListOffsets per topic set shared by every group reading it (`fetch.rs`), computes lag
//! (`report.rs`) and status (`status.rs`), and publishes the series and the report `GET /groups`
//! serves (`json.rs`). Never on a client's path: it only reads the coordinator through its
//! channel and talks to the gateway on its own connections.

pub mod fetch;
pub mod json;
pub mod report;
pub mod status;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::backend::Backend;
use crate::coordinator::{GroupService, Snapshot};
use crate::group::GroupState;
use crate::metrics::lag::RoundRequests;
use crate::metrics::Metrics;
use crate::passthrough::{Observed, Passthrough};
use crate::peers::{Owner, Peers};
use fetch::Partitions;
use report::{GroupLag, Report};
use status::{History, Sample};

/// How the poller runs (`--lag-interval-secs`, `--lag-window-secs`, `--lag-partition-metrics`).
#[derive(Clone, Debug)]
pub struct Settings {
    pub interval: Duration,
    /// The status window: `warning` and `stalled` need the whole window to agree.
    pub window: Duration,
    /// Also export `kelp_group_lag_partition{group,topic,partition}`.
    pub per_partition: bool,
}

/// The lag shared between the poller and `GET /groups`.
pub struct Lag {
    pub settings: Settings,
    report: ArcSwap<Report>,
}

impl Lag {
    pub fn new(settings: Settings) -> Arc<Lag> {
        Arc::new(Lag {
            settings,
            report: ArcSwap::from_pointee(Report::default()),
        })
    }

    /// The last round's report.
    pub fn report(&self) -> Arc<Report> {
        self.report.load_full()
    }
}

/// What the poller reads from.
pub struct Sources {
    pub groups: GroupService,
    pub passthrough: Arc<Passthrough>,
    pub backend: Arc<Backend>,
    pub metrics: Arc<Metrics>,
    /// With several kelps: only the groups this one owns are reported.
    pub peers: Option<Arc<Peers>>,
}

/// One group's inputs for a round.
struct Input {
    group: String,
    mode: &'static str,
    members: usize,
    stable: bool,
    committed: BTreeMap<(String, i32), i64>,
    commit_age_seconds: Option<f64>,
}

impl Input {
    fn partitions(&self) -> Partitions {
        let mut p = Partitions::new();
        for (topic, partition) in self.committed.keys() {
            p.entry(topic.clone()).or_default().insert(*partition);
        }
        p
    }
}

/// Runs rounds forever, one every interval (a slow round delays the next, never overlaps it).
pub async fn run(lag: Arc<Lag>, sources: Sources) {
    let mut ticks = tokio::time::interval(lag.settings.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    let mut histories: HashMap<String, History> = HashMap::new();
    loop {
        ticks.tick().await;
        let Some(snapshot) = sources.groups.snapshot().await else {
            return; // the coordinator is gone: kelp is stopping
        };
        let began = Instant::now();
        let at = started.elapsed().as_millis() as u64;
        let mut requests = RoundRequests::default();
        let mut report = round(&lag, &sources, snapshot, &mut histories, at, &mut requests).await;
        // Local groups released to another kelp while the round ran have no series here any more.
        if let Some(now) = sources.groups.snapshot().await {
            let still: std::collections::HashSet<&str> =
                now.groups.iter().map(|g| g.group.as_str()).collect();
            report
                .groups
                .retain(|_, g| g.mode != "local" || still.contains(g.group.as_str()));
        }
        sources
            .metrics
            .lag
            .publish(&report, lag.settings.per_partition, &|g, mode| {
                sources.metrics.groups.label_for(g, mode)
            });
        sources.metrics.lag.round_done(began.elapsed(), &requests);
        lag.report.store(Arc::new(report));
    }
}

async fn round(
    lag: &Lag,
    sources: &Sources,
    snapshot: Snapshot,
    histories: &mut HashMap<String, History>,
    at: u64,
    requests: &mut RoundRequests,
) -> Report {
    let mut inputs: Vec<Input> = snapshot
        .groups
        .iter()
        .map(|g| local_input(&snapshot, g))
        .collect();
    let observed = passthrough_groups(&sources.passthrough, sources.peers.as_deref(), &snapshot);
    let asked: Vec<(String, Arc<Partitions>)> = observed
        .iter()
        .filter(|o| !o.partitions.is_empty())
        .map(|o| (o.group.clone(), o.partitions.clone()))
        .collect();
    let mut commits = fetch::gateway_commits(&sources.backend, asked).await;
    let previous = lag.report();
    let mut kept = Vec::new();
    for o in &observed {
        let committed = match commits.remove(&o.group) {
            Some(Ok(offsets)) => {
                requests.offset_fetches[0] += 1;
                offsets.into_iter().collect()
            }
            Some(Err(e)) => {
                requests.offset_fetches[1] += 1;
                tracing::debug!(group = %o.group, error = %e, "lag: cannot read a passthrough group's commits; it keeps its last lag");
                kept.extend(previous.groups.get(&o.group).cloned());
                continue;
            }
            None => BTreeMap::new(),
        };
        inputs.push(Input {
            group: o.group.clone(),
            mode: "passthrough",
            members: o.members.unwrap_or(0),
            stable: o.state == Some(GroupState::Stable),
            committed,
            commit_age_seconds: o.last_commit.map(|t| t.elapsed().as_secs_f64()),
        });
    }
    let partitions: Vec<Partitions> = inputs.iter().map(Input::partitions).collect();
    let sets = fetch::plan(&partitions);
    sources.metrics.lag.topic_sets.set(sets.len() as i64);
    let mut log_ends = HashMap::new();
    for (key, result) in fetch::log_ends(&sources.backend, &sets).await {
        match result {
            Ok(offsets) => {
                requests.list_offsets[0] += 1;
                log_ends.insert(key, offsets);
            }
            Err(e) => {
                requests.list_offsets[1] += 1;
                tracing::warn!(topics = ?key, error = %e, "lag: ListOffsets to the gateway failed; those groups keep their last lag");
            }
        }
    }
    let window = lag.settings.window.as_millis() as u64;
    let mut groups: BTreeMap<String, GroupLag> =
        kept.into_iter().map(|g| (g.group.clone(), g)).collect();
    for (input, partitions) in inputs.into_iter().zip(partitions) {
        let key: fetch::TopicSet = partitions.keys().cloned().collect();
        let empty = fetch::Offsets::new();
        let ends = match log_ends.get(&key) {
            Some(ends) => ends,
            None if key.is_empty() => &empty,
            None => {
                // This round could not see the log ends: keep what the last round saw.
                if let Some(last) = previous.groups.get(&input.group) {
                    groups.insert(input.group.clone(), last.clone());
                }
                continue;
            }
        };
        let (topics, total, committed) = report::topics(&input.committed, ends);
        let status = histories.entry(input.group.clone()).or_default().push(
            Sample {
                at,
                lag: total,
                committed,
                members: input.members,
                stable: input.stable,
            },
            window,
        );
        groups.insert(
            input.group.clone(),
            GroupLag {
                group: input.group,
                mode: input.mode,
                topics,
                total,
                committed,
                status,
                commit_age_seconds: input.commit_age_seconds,
            },
        );
    }
    histories.retain(|g, _| groups.contains_key(g));
    Report {
        at_unix_ms: crate::lag::json::unix_ms(),
        groups,
    }
}

fn local_input(snapshot: &Snapshot, g: &crate::group::GroupView) -> Input {
    let last_commit = g.offsets.iter().map(|o| o.commit_timestamp).max();
    Input {
        group: g.group.clone(),
        mode: "local",
        members: g.members.len(),
        stable: g.state == GroupState::Stable,
        committed: g
            .offsets
            .iter()
            .map(|o| ((o.topic.clone(), o.partition), o.offset))
            .collect(),
        commit_age_seconds: last_commit.map(|t| snapshot.now.saturating_sub(t) as f64 / 1000.0),
    }
}

/// The passthrough groups this kelp reports: observed here, not served by its coordinator (a
/// group that moved to local is reported as local), and owned here when kelps form a mesh.
pub fn passthrough_groups(
    passthrough: &Passthrough,
    peers: Option<&Peers>,
    snapshot: &Snapshot,
) -> Vec<Observed> {
    let local: std::collections::HashSet<&str> =
        snapshot.groups.iter().map(|g| g.group.as_str()).collect();
    let mut observed: Vec<Observed> = passthrough
        .observer
        .observed()
        .into_iter()
        .filter(|o| !local.contains(o.group.as_str()))
        .filter(|o| peers.map_or(true, |p| matches!(p.owner(&o.group), Owner::Me)))
        .collect();
    observed.sort_by(|a, b| a.group.cmp(&b.group));
    observed
}
