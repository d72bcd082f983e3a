//! The shell's side of durability: performs the coordinator's `Output::Persist` and
//! `Output::Import` against a [`Store`], loads every group at startup, converts between the
//! state machine's types and the store's, and maps store errors to Kafka error codes.
//!
//! Order: each write's store method is *called* when the coordinator emits it (the store applies
//! one group's operations in call order); only the awaiting happens later, in `Inflight`.

use std::pin::Pin;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::stream::{FuturesUnordered, StreamExt};
use futures::Future;

use crate::group::{self, GroupRecord, LoadedGroup, MemberRecord, OffsetEntry, Persist, Write};
use crate::store::{self, Store, StoreError, StoredGroup, StoredMember};

/// Groups loaded at once at startup (each is a few filer requests; the filer client bounds the
/// requests in flight itself, so this only keeps it saturated).
const LOAD_CONCURRENCY: usize = 256;
/// Backoff between startup load attempts while the store is unavailable.
const LOAD_BACKOFF_MIN: Duration = Duration::from_millis(200);
const LOAD_BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Attempts before the shell stops retrying the load (about 2 hours at the longest backoff);
/// the coordinator then keeps answering COORDINATOR_LOAD_IN_PROGRESS.
pub(super) const LOAD_ATTEMPTS: u32 = 720;

pub(super) const COORDINATOR_NOT_AVAILABLE: i16 = 15;
pub(super) const UNKNOWN_SERVER_ERROR: i16 = -1;

/// The coordinator's clock: milliseconds since the Unix epoch at start, advanced by a monotonic
/// clock (so it never goes back), and therefore comparable with the timestamps a previous run
/// stored.
#[derive(Clone, Copy)]
pub(super) struct Clock {
    base_ms: u64,
    start: Instant,
}

impl Clock {
    pub(super) fn new() -> Self {
        let base_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Clock {
            base_ms,
            start: Instant::now(),
        }
    }

    pub(super) fn now(&self) -> group::Millis {
        self.base_ms
            .saturating_add(self.start.elapsed().as_millis() as u64)
    }

    /// When the monotonic clock reaches coordinator time `at`.
    pub(super) fn instant(&self, at: group::Millis) -> Instant {
        self.start + Duration::from_millis(at.saturating_sub(self.base_ms))
    }
}

/// The Kafka error a failed store operation is answered with: retriable unavailability →
/// COORDINATOR_NOT_AVAILABLE (clients retry); anything else → UNKNOWN_SERVER_ERROR.
pub(super) fn error_code(e: &StoreError) -> i16 {
    if e.is_retriable() {
        COORDINATOR_NOT_AVAILABLE
    } else {
        UNKNOWN_SERVER_ERROR
    }
}

// ---- conversions ----------------------------------------------------------------------------

fn to_ms(t: group::Millis) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

fn from_ms(t: i64) -> group::Millis {
    u64::try_from(t).unwrap_or(0)
}

pub(super) fn offset_to_store(o: group::CommittedOffset) -> store::CommittedOffset {
    store::CommittedOffset {
        offset: o.offset,
        leader_epoch: o.leader_epoch,
        metadata: o.metadata,
        commit_timestamp_ms: to_ms(o.commit_timestamp),
        expire_timestamp_ms: o.expire_timestamp.map(to_ms),
    }
}

pub(super) fn offset_from_store(o: store::CommittedOffset) -> group::CommittedOffset {
    group::CommittedOffset {
        offset: o.offset,
        leader_epoch: o.leader_epoch,
        metadata: o.metadata,
        commit_timestamp: from_ms(o.commit_timestamp_ms),
        expire_timestamp: o.expire_timestamp_ms.map(from_ms),
    }
}

pub(super) fn record_to_store(r: GroupRecord) -> StoredGroup {
    StoredGroup {
        protocol_type: r.protocol_type,
        protocol_name: r.protocol_name,
        generation: r.generation,
        leader: r.leader,
        state_timestamp_ms: to_ms(r.state_since),
        members: r
            .members
            .into_iter()
            .map(|m| StoredMember {
                member_id: m.member_id,
                group_instance_id: m.instance_id,
                client_id: m.client_id,
                client_host: m.client_host,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                session_timeout_ms: m.session_timeout_ms,
                subscription: m.subscription,
                assignment: m.assignment,
            })
            .collect(),
    }
}

pub(super) fn record_from_store(r: StoredGroup) -> GroupRecord {
    GroupRecord {
        protocol_type: r.protocol_type,
        protocol_name: r.protocol_name,
        generation: r.generation,
        leader: r.leader,
        state_since: from_ms(r.state_timestamp_ms),
        members: r
            .members
            .into_iter()
            .map(|m| MemberRecord {
                member_id: m.member_id,
                instance_id: m.group_instance_id,
                client_id: m.client_id,
                client_host: m.client_host,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                session_timeout_ms: m.session_timeout_ms,
                subscription: m.subscription,
                assignment: m.assignment,
            })
            .collect(),
    }
}

fn entries_to_store(v: Vec<OffsetEntry>) -> store::TopicPartitionOffsets {
    v.into_iter()
        .map(|(t, p, o)| (t, p, offset_to_store(o)))
        .collect()
}

fn entries_from_store(v: store::TopicPartitionOffsets) -> Vec<OffsetEntry> {
    v.into_iter()
        .map(|(t, p, o)| (t, p, offset_from_store(o)))
        .collect()
}

// ---- writes and imports in flight -----------------------------------------------------------

/// A store operation that finished.
pub(super) enum Done {
    Persisted {
        id: group::WriteId,
        group: String,
        kind: &'static str,
        /// The ownership term it was issued in (fenced actors only).
        term: Option<u64>,
        result: Result<(), StoreError>,
    },
    Imported {
        id: group::WriteId,
        group: String,
        result: Result<Vec<OffsetEntry>, StoreError>,
    },
}

type DoneFuture<'s> = Pin<Box<dyn Future<Output = Done> + Send + 's>>;

/// Store operations started and not yet finished, borrowing the store.
pub(super) struct Inflight<'s> {
    store: &'s dyn Store,
    running: FuturesUnordered<DoneFuture<'s>>,
}

impl<'s> Inflight<'s> {
    pub(super) fn new(store: &'s dyn Store) -> Self {
        Inflight {
            store,
            running: FuturesUnordered::new(),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    /// Starts a write: the store method is called now, so call order is apply order. `term`:
    /// the ownership term it is issued in (fenced actors).
    pub(super) fn persist(&mut self, p: Persist, term: Option<u64>) {
        let Persist { id, group, write } = p;
        let s = self.store;
        let (kind, fut) = match write {
            Write::Offsets(v) => ("offsets", s.put_offsets(&group, entries_to_store(v))),
            Write::DeleteOffsets(v) => ("offset deletion", s.delete_offsets(&group, v)),
            Write::Record(r) => (
                "group record",
                s.put_group(&group, record_to_store(r).encode()),
            ),
            Write::DeleteGroup => ("group deletion", s.delete_group(&group)),
            Write::ConsumerRecord(r) => (
                "consumer group record",
                s.put_group(&group, store::encode_consumer_record(&r)),
            ),
        };
        self.running.push(Box::pin(async move {
            let result = fut.await;
            Done::Persisted {
                id,
                group,
                kind,
                term,
                result,
            }
        }));
    }

    /// Starts reading the gateway's offsets of a group.
    pub(super) fn import(&mut self, id: group::WriteId, group: String) {
        let fut = self.store.import_gateway_offsets(&group);
        self.running.push(Box::pin(async move {
            let result = fut.await.map(entries_from_store);
            Done::Imported { id, group, result }
        }));
    }

    /// The next finished operation (pending forever when none runs).
    pub(super) async fn next(&mut self) -> Done {
        match self.running.next().await {
            Some(done) => done,
            None => std::future::pending().await,
        }
    }

    /// A finished operation, if one is ready now.
    pub(super) fn ready(&mut self) -> Option<Done> {
        futures::FutureExt::now_or_never(self.running.next()).flatten()
    }
}

/// Logs store failures once per outage, not once per write.
#[derive(Default)]
pub(super) struct Outage {
    since: Option<Instant>,
    failures: u64,
}

impl Outage {
    pub(super) fn failed(&mut self, what: &str, group: &str, e: &StoreError) {
        self.failures += 1;
        if self.since.is_none() {
            self.since = Some(Instant::now());
            tracing::warn!(group, what, error = %e, "store operation failed; affected requests get {} until it works again", error_code(e));
        } else {
            tracing::debug!(group, what, error = %e, "store operation failed");
        }
    }

    pub(super) fn succeeded(&mut self) {
        if let Some(since) = self.since.take() {
            tracing::info!(
                failures = self.failures,
                after_ms = since.elapsed().as_millis() as u64,
                "store operations succeed again"
            );
            self.failures = 0;
        }
    }
}

// ---- startup load ---------------------------------------------------------------------------

/// What a load found.
pub(super) struct Loaded {
    pub groups: Vec<LoadedGroup>,
    pub offsets: usize,
    pub with_members: usize,
}

/// Lists every group in the store and loads its record and offsets, `LOAD_CONCURRENCY` at a
/// time. A record that does not decode is logged and skipped (the group loads without it); any
/// other failure fails the whole load, which the caller retries.
pub(super) async fn load_all(store: &dyn Store) -> Result<Loaded, StoreError> {
    let ids = store.list_groups().await?;
    let results: Vec<Result<LoadedGroup, StoreError>> = futures::stream::iter(ids)
        .map(|id| load_one(store, id))
        .buffer_unordered(LOAD_CONCURRENCY)
        .collect()
        .await;
    let groups = results.into_iter().collect::<Result<Vec<_>, _>>()?;
    let offsets = groups.iter().map(|g| g.offsets.len()).sum();
    let with_members = groups
        .iter()
        .filter(|g| {
            g.record.as_ref().is_some_and(|r| !r.members.is_empty())
                || g.consumer.as_ref().is_some_and(|r| !r.members.is_empty())
        })
        .count();
    Ok(Loaded {
        groups: groups.into_iter().filter(known).collect(),
        offsets,
        with_members,
    })
}

/// Whether the store held anything of a loaded group.
pub(super) fn known(g: &LoadedGroup) -> bool {
    g.record.is_some() || g.consumer.is_some() || !g.offsets.is_empty()
}

/// One group's record and offsets. A record that does not decode is logged and skipped (the group
/// loads without it), and so are offsets that do not; any other failure fails the load.
pub(super) async fn load_one(store: &dyn Store, id: String) -> Result<LoadedGroup, StoreError> {
    let record_bytes = store.load_group(&id).await?;
    let offsets = match store.load_offsets(&id).await {
        Ok(v) => v,
        Err(StoreError::Corrupt(e)) => {
            tracing::error!(group = %id, error = %e, "offsets in the store do not decode; the group loads without them");
            Vec::new()
        }
        Err(e) => return Err(e),
    };
    let (mut record, mut consumer) = (None, None);
    match record_bytes.as_deref().map(store::decode_record) {
        None => {}
        Some(Ok(store::DecodedRecord::Classic(r))) => record = Some(record_from_store(r)),
        Some(Ok(store::DecodedRecord::Consumer(r))) => consumer = Some(r),
        Some(Err(e)) => {
            tracing::error!(group = %id, error = %e, "group record does not decode; the group loads without it");
        }
    }
    Ok(LoadedGroup {
        group: id,
        record,
        consumer,
        offsets: entries_from_store(offsets),
    })
}

/// Claims one group for this kelp's writes (a new ownership epoch, `store::Store::claim`), then
/// loads what the claim read.
pub(super) async fn claim_one(store: &dyn Store, id: String) -> Result<LoadedGroup, StoreError> {
    let epoch = store.claim(&id).await?;
    tracing::debug!(group = %id, epoch, "claimed the group in the store");
    load_one(store, id).await
}

/// A load that starts after `delay`.
pub(super) fn load_after(
    store: &dyn Store,
    delay: Duration,
) -> Pin<Box<dyn Future<Output = Result<Loaded, StoreError>> + Send + '_>> {
    Box::pin(async move {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        load_all(store).await
    })
}

/// The backoff before load attempt `attempt` (1-based; the first has none).
pub(super) fn load_backoff(attempt: u32) -> Duration {
    if attempt <= 1 {
        return Duration::ZERO;
    }
    let factor = 1u32 << (attempt - 2).min(10);
    (LOAD_BACKOFF_MIN * factor).min(LOAD_BACKOFF_MAX)
}
