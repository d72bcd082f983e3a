//! Several kelps, one coordinator per group (README §5). Each kelp knows the peers (`--peers`, or
//! `--peer-dns` re-resolved), probes them, and keeps a `View`: the live peers, itself included. The
//! owner of a group is the live peer that rendezvous hashing picks (`hash.rs`), so every kelp with
//! the same view names the same owner. A kelp forwards the requests of groups it does not own to
//! the owner's peer listener (`link.rs`, one peer connection per client connection); a request that
//! arrives on the peer listener is served or answered NOT_COORDINATOR, never forwarded again.
//!
//! The view only says which kelp *should* coordinate a group (rendezvous hashing of the group's
//! lease bucket); the kelp that *may* is the holder of the bucket's ownership lease in the filer
//! (`lease`). When the view changes, the lease task gives back the buckets this kelp no longer
//! prefers (after the coordinator released their groups) and takes the ones it now prefers.

mod discovery;
pub mod hash;
pub mod link;
mod probe;
pub mod scatter;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::watch;

pub use discovery::{Dns, Resolve, Resolved, Static};
pub use link::Link;
pub use probe::{NetProbe, Probe};

use crate::metrics::Metrics;
use crate::protocol::versions::BackendRanges;

/// Failed probes in a row after which a peer is down.
const DOWN_AFTER: u32 = 2;

/// The live peers as this kelp sees them.
#[derive(Debug)]
pub struct View {
    /// Sorted; always holds this kelp.
    pub live: Vec<String>,
    /// 1 for the first view, then one more per change.
    pub version: u64,
    /// Lease buckets the group ids hash into (ownership is per bucket).
    pub buckets: u32,
}

/// Who owns a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    Me,
    Peer(String),
}

/// The peers, the current view and how ownership follows from it.
pub struct Peers {
    me: String,
    view: ArcSwap<View>,
    /// What each live peer's ApiVersions answered (its own rules), from the last probe round.
    ranges: ArcSwap<Vec<BackendRanges>>,
    changes: watch::Sender<Arc<View>>,
    settle: Duration,
}

impl Peers {
    /// `me`: this kelp's peer address as the others list it; groups hash into the default
    /// number of lease buckets.
    pub fn new(me: String, probe_interval: Duration) -> Arc<Peers> {
        Peers::with_buckets(me, probe_interval, crate::lease::DEFAULT_BUCKETS)
    }

    /// Like `new`, with `buckets` lease buckets (`--lease-buckets`, the same on every kelp).
    pub fn with_buckets(me: String, probe_interval: Duration, buckets: u32) -> Arc<Peers> {
        let me = canonical(&me);
        let first = Arc::new(View {
            live: vec![me.clone()],
            version: 1,
            buckets: buckets.max(1),
        });
        let (changes, _) = watch::channel(first.clone());
        Arc::new(Peers {
            me,
            view: ArcSwap::new(first),
            ranges: ArcSwap::from_pointee(Vec::new()),
            changes,
            settle: probe_interval * DOWN_AFTER,
        })
    }

    pub fn me(&self) -> &str {
        &self.me
    }

    pub fn view(&self) -> Arc<View> {
        self.view.load_full()
    }

    /// Every view from now on (the current one first).
    pub fn subscribe(&self) -> watch::Receiver<Arc<View>> {
        self.changes.subscribe()
    }

    /// The API versions every live peer serves (one entry per peer, this kelp not included).
    pub fn peer_ranges(&self) -> Arc<Vec<BackendRanges>> {
        self.ranges.load_full()
    }

    /// How long a request the owner did not answer waits for the view to name the next owner:
    /// two settle times (a dead peer is down after two failed probes, each up to a second).
    pub fn failover_window(&self) -> Duration {
        (self.settle * 2).max(Duration::from_secs(3))
    }

    /// The owner of `group` in the current view.
    pub fn owner(&self, group: &str) -> Owner {
        self.view().owner(&self.me, group)
    }

    /// Installs a new live set (sorted, with this kelp) if it differs from the current one.
    fn install(&self, live: Vec<String>, metrics: &Metrics) -> bool {
        let current = self.view.load();
        if current.live == live {
            return false;
        }
        let view = Arc::new(View {
            live,
            version: current.version + 1,
            buckets: current.buckets,
        });
        tracing::info!(live = ?view.live, version = view.version, "peer view changed: group ownership follows");
        metrics.peer_view_changes.inc();
        self.view.store(view.clone());
        self.changes.send_replace(view);
        true
    }
}

impl View {
    /// The preferred owner of `group` in this view: the live peer rendezvous hashing picks for
    /// the group's lease bucket. Only the holder of that bucket's lease serves the group.
    pub fn owner(&self, me: &str, group: &str) -> Owner {
        match hash::group_owner(&self.live, group, self.buckets) {
            Some(p) if p != me => Owner::Peer(p.to_string()),
            _ => Owner::Me,
        }
    }
}

/// A peer address in the one spelling every kelp uses for it (the hash input): an IP address
/// with its port as `SocketAddr` prints it (`10.0.0.7:9094`, `[fd00::7]:9094`), so that
/// `$(POD_IP):9094` and what DNS returns for the same pod agree; a host name stays as given.
pub fn canonical(addr: &str) -> String {
    if let Ok(sa) = addr.parse::<std::net::SocketAddr>() {
        return sa.to_string();
    }
    if let Some((host, port)) = addr.rsplit_once(':') {
        let ip = host.trim_matches(['[', ']']).parse::<std::net::IpAddr>();
        if let (Ok(ip), Ok(port)) = (ip, port.parse::<u16>()) {
            return std::net::SocketAddr::new(ip, port).to_string();
        }
    }
    addr.to_string()
}

/// Where a group request goes among the peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Every group it names is this kelp's (or it names none: ListGroups).
    Here,
    /// Every group it names is this peer's.
    One(String),
    /// A batch naming groups of several owners: `true` for each group (in request order) that
    /// is not this kelp's.
    Mixed(Vec<bool>),
}

/// Where `request` goes in the current view.
pub fn place(peers: &Peers, request: &crate::group::Request) -> Placement {
    let groups = crate::group::named_groups(request);
    let view = peers.view();
    let mut owners = groups.iter().map(|g| view.owner(peers.me(), g));
    let Some(first) = owners.next() else {
        return Placement::Here;
    };
    if owners.all(|o| o == first) {
        return match first {
            Owner::Me => Placement::Here,
            Owner::Peer(p) => Placement::One(p),
        };
    }
    Placement::Mixed(
        groups
            .iter()
            .map(|g| view.owner(peers.me(), g) != Owner::Me)
            .collect(),
    )
}

/// What is known of each peer: resolved addresses and their probe results.
#[derive(Debug, Default)]
pub struct Membership {
    /// Address → failed probes in a row (`None`: never probed yet).
    peers: BTreeMap<String, Option<u32>>,
    /// Address → what its last good probe answered.
    ranges: BTreeMap<String, BackendRanges>,
}

impl Membership {
    /// The resolver's latest answer: new addresses are added (down until probed), gone ones dropped.
    pub fn resolved(&mut self, me: &str, addrs: Vec<String>) {
        let addrs: std::collections::BTreeSet<String> = addrs
            .iter()
            .map(|a| canonical(a))
            .filter(|a| a != me)
            .collect();
        self.peers.retain(|a, _| addrs.contains(a));
        self.ranges.retain(|a, _| addrs.contains(a));
        for a in addrs {
            self.peers.entry(a).or_insert(None);
        }
    }

    pub fn addresses(&self) -> Vec<String> {
        self.peers.keys().cloned().collect()
    }

    pub fn probed(&mut self, addr: &str, answer: Option<BackendRanges>) {
        let ok = answer.is_some();
        if let Some(ranges) = answer {
            if self.peers.contains_key(addr) {
                self.ranges.insert(addr.to_string(), ranges);
            }
        }
        if let Some(failures) = self.peers.get_mut(addr) {
            *failures = Some(if ok {
                0
            } else {
                failures.unwrap_or(DOWN_AFTER).saturating_add(1)
            });
        }
    }

    /// The live peers, sorted, with `me`: a peer is live from its first good probe until
    /// `DOWN_AFTER` failed ones in a row.
    pub fn live(&self, me: &str) -> Vec<String> {
        let mut live: Vec<String> = self
            .peers
            .iter()
            .filter(|(_, f)| f.is_some_and(|f| f < DOWN_AFTER))
            .map(|(a, _)| a.clone())
            .collect();
        live.push(me.to_string());
        live.sort();
        live
    }

    /// The API versions of the live peers (this kelp not included).
    pub fn live_ranges(&self, me: &str) -> Vec<BackendRanges> {
        self.live(me)
            .iter()
            .filter_map(|a| self.ranges.get(a).cloned())
            .collect()
    }

    /// (live, down) counts, this kelp counted live.
    pub fn counts(&self) -> (usize, usize) {
        let live = self
            .peers
            .values()
            .filter(|f| f.is_some_and(|f| f < DOWN_AFTER))
            .count();
        (live + 1, self.peers.len() - live)
    }
}

/// Discovery and probing: resolves every `dns_every` (a static list once), probes every peer every
/// `probe_every`, and installs the view that follows. Runs until the process ends.
pub struct Watch {
    pub peers: Arc<Peers>,
    pub resolver: Box<dyn Resolve>,
    pub probe: Arc<dyn Probe>,
    pub metrics: Arc<Metrics>,
    pub probe_every: Duration,
    pub dns_every: Duration,
    pub membership: Membership,
    last_resolve: Option<Instant>,
}

impl Watch {
    pub fn new(
        peers: Arc<Peers>,
        resolver: Box<dyn Resolve>,
        probe: Arc<dyn Probe>,
        metrics: Arc<Metrics>,
        probe_every: Duration,
        dns_every: Duration,
    ) -> Watch {
        Watch {
            peers,
            resolver,
            probe,
            metrics,
            probe_every,
            dns_every,
            membership: Membership::default(),
            last_resolve: None,
        }
    }

    /// One round: resolve if due, probe every peer at once, install the view.
    pub async fn round(&mut self) {
        let due = self
            .last_resolve
            .map_or(true, |t| t.elapsed() >= self.dns_every);
        if due {
            match self.resolver.resolve().await {
                Ok(addrs) => {
                    self.membership.resolved(self.peers.me(), addrs);
                    self.last_resolve = Some(Instant::now());
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot resolve the peers; keeping the last answer")
                }
            }
        }
        let addrs = self.membership.addresses();
        self.probe.retain(&addrs);
        let results = futures::future::join_all(addrs.iter().map(|a| self.probe.probe(a))).await;
        for (addr, ok) in addrs.iter().zip(results) {
            self.membership.probed(addr, ok);
        }
        let (live, down) = self.membership.counts();
        self.metrics
            .peers
            .with_label_values(&["live"])
            .set(live as i64);
        self.metrics
            .peers
            .with_label_values(&["down"])
            .set(down as i64);
        let view = self.membership.live(self.peers.me());
        let ranges = self.membership.live_ranges(self.peers.me());
        if **self.peers.ranges.load() != ranges {
            self.peers.ranges.store(Arc::new(ranges));
        }
        self.peers.install(view, &self.metrics);
    }

    /// Rounds forever, one every `probe_every`.
    pub async fn run(mut self) {
        let mut tick = tokio::time::interval(self.probe_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.round().await;
        }
    }
}

#[cfg(test)]
mod tests;
