//! The lease task: every round (a quarter of the lease time, and at once when the peer view
//! changes) it renews the sentinel, then renews the held leases this kelp should keep, takes
//! those it should hold, gives back the others (after the coordinator shell dropped their
//! groups), renews the sentinel again to confirm fresh takes, and publishes the result to
//! [`Leases`]. Which buckets this kelp should hold comes from the peer view (rendezvous hashing
//! of the bucket, `peers::hash`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};

use super::client::LockClient;
use super::machine::{Answer, Ask, Change, Lease, Sentinel, Timing};
use super::{Leases, Window};
use crate::metrics::Metrics;
use crate::peers::{hash, Peers};

/// Lock calls in flight at once.
const CONCURRENCY: usize = 16;
/// How long a give-back waits for the shell to drop the bucket's groups.
const RELEASE_WAIT: Duration = Duration::from_secs(1);

/// What the lease task needs.
pub struct DriverConfig {
    pub client: LockClient,
    pub timing: Timing,
    /// Lease names are `<namespace>/bucket-<i>-of-<n>`; the sentinel is `<namespace>/sentinel/<me>/<nonce>`.
    pub namespace: String,
}

struct Driver {
    config: DriverConfig,
    leases: Arc<Leases>,
    peers: Arc<Peers>,
    metrics: Arc<Metrics>,
    machines: Vec<Lease>,
    sentinel: Sentinel,
    sentinel_name: String,
    names: Vec<String>,
}

/// Starts the lease task; it runs for the life of the process.
pub fn spawn(
    config: DriverConfig,
    leases: Arc<Leases>,
    peers: Arc<Peers>,
    metrics: Arc<Metrics>,
) -> tokio::task::JoinHandle<()> {
    let n = leases.buckets();
    let names = (0..n)
        .map(|b| format!("{}/bucket-{b}-of-{n}", config.namespace))
        .collect();
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
        ^ u128::from(std::process::id());
    let sentinel_name = format!("{}/sentinel/{}/{nonce:x}", config.namespace, peers.me());
    metrics.lease.buckets.set(i64::from(n));
    let driver = Driver {
        machines: vec![Lease::default(); n as usize],
        sentinel: Sentinel::default(),
        sentinel_name,
        names,
        config,
        leases,
        peers,
        metrics,
    };
    tokio::spawn(driver.run())
}

impl Driver {
    async fn run(mut self) {
        let mut views = self.peers.subscribe();
        loop {
            let started = Instant::now();
            self.round().await;
            let next = tokio::time::Instant::from_std(started + self.config.timing.round);
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                changed = views.changed() => {
                    if changed.is_err() {
                        tokio::time::sleep_until(next).await;
                    }
                }
            }
        }
    }

    fn wanted(&self, bucket: u32) -> bool {
        let view = self.peers.view();
        hash::owner(&view.live, &hash::bucket_key(bucket)).map_or(true, |o| o == self.peers.me())
    }

    async fn ask_sentinel(&mut self) -> bool {
        let ask = self.sentinel.ask();
        let token = match &ask {
            Ask::Renew(t) => t.as_str(),
            _ => "",
        };
        self.metrics.lease.requests.inc();
        let answer = self
            .config
            .client
            .lock(&self.sentinel_name, self.config.timing.ttl, token)
            .await;
        if !matches!(answer, Answer::Granted { .. }) && matches!(ask, Ask::Renew(_)) {
            self.metrics.lease.renew_failures.inc();
        }
        self.sentinel.answered(&ask, answer)
    }

    async fn round(&mut self) {
        self.ask_sentinel().await;
        let lineage = self.sentinel.lineage();
        let now = Instant::now();
        let mut asks = Vec::new();
        let mut ended = Vec::new();
        for b in 0..self.machines.len() {
            let want = self.wanted(b as u32);
            let (ask, change) = self.machines[b].ask(now, want);
            if let Change::Lost(loss) = change {
                ended.push((b, loss));
            }
            if let Some(ask) = ask {
                asks.push((b, ask));
            }
        }
        if !ended.is_empty() {
            for (b, loss) in &ended {
                self.metrics
                    .lease
                    .losses
                    .with_label_values(&[loss.label()])
                    .inc();
                tracing::info!(bucket = b, reason = loss.label(), "ownership lease ended");
            }
            // The shell drops the groups of the ended leases before any is given back.
            let version = self.publish();
            if asks.iter().any(|(_, a)| matches!(a, Ask::Give(_)))
                && !self.leases.wait_acted(version, RELEASE_WAIT).await
            {
                tracing::warn!("the coordinator did not confirm dropping released groups in time; giving the leases back anyway (they are no longer served)");
            }
        }
        self.metrics.lease.requests.inc_by(asks.len() as u64);
        let client = &self.config.client;
        let ttl = self.config.timing.ttl;
        let names = &self.names;
        let answers: Vec<(usize, Ask, Instant, Answer)> = stream::iter(asks)
            .map(|(b, ask)| async move {
                let sent = Instant::now();
                let answer = match &ask {
                    Ask::Take => client.lock(&names[b], ttl, "").await,
                    Ask::Renew(t) => client.lock(&names[b], ttl, t).await,
                    Ask::Give(t) => {
                        client.unlock(&names[b], t).await;
                        Answer::Failed("given back".into())
                    }
                };
                (b, ask, sent, answer)
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut taken = Vec::new();
        let mut changed = !ended.is_empty();
        for (b, ask, sent, answer) in answers {
            let failed_renewal =
                matches!(ask, Ask::Renew(_)) && !matches!(answer, Answer::Granted { .. });
            if failed_renewal {
                self.metrics.lease.renew_failures.inc();
            }
            let now = Instant::now();
            match self.machines[b].answered(&self.config.timing, &ask, sent, now, lineage, answer) {
                Change::Taken => {
                    self.metrics.lease.acquisitions.inc();
                    taken.push(b);
                }
                Change::Lost(loss) => {
                    self.metrics
                        .lease
                        .losses
                        .with_label_values(&[loss.label()])
                        .inc();
                    tracing::warn!(bucket = b, reason = loss.label(), "ownership lease lost");
                }
                Change::None => {}
            }
            changed |= failed_renewal || matches!(ask, Ask::Renew(_));
        }
        if !taken.is_empty() {
            let held = self.ask_sentinel().await;
            let confirmed = held && self.sentinel.lineage() == lineage;
            let now = Instant::now();
            for &b in &taken {
                self.machines[b].confirm(&self.config.timing, confirmed, now);
                let waits = self.machines[b]
                    .window()
                    .and_then(|(from, _)| from)
                    .is_some_and(|f| f > now);
                tracing::info!(
                    bucket = b,
                    term = self.machines[b].term(),
                    waits_out_predecessor = waits,
                    "ownership lease taken"
                );
            }
            changed = true;
        }
        if changed {
            self.publish();
        }
    }

    /// Mirrors every machine into the shared table.
    fn publish(&self) -> u64 {
        let windows: Vec<(u32, Window)> = self
            .machines
            .iter()
            .enumerate()
            .map(|(b, m)| {
                let (from, until) = match m.window() {
                    Some((from, until)) => (from, Some(until)),
                    None => (None, None),
                };
                (
                    b as u32,
                    Window {
                        term: m.term(),
                        from,
                        until,
                    },
                )
            })
            .collect();
        self.metrics
            .lease
            .held
            .set(self.machines.iter().filter(|m| m.held()).count() as i64);
        self.leases.publish(windows)
    }
}
