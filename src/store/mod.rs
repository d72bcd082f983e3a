//! Durable committed offsets and group records behind one small trait, [`Store`]: the filer
//! implementation ([`FilerStore`], SeaweedFS over HTTP) and an in-memory one for tests
//! ([`MemoryStore`]). Knows nothing of the group state machine (`group/`); the coordinator shell
//! maps its groups to [`StoredGroup`] records and its commits to [`CommittedOffset`]s.
//!
//! Contract shared by every implementation:
//! - **Order per group.** Operations on one group take effect in the order the methods were
//!   *called* (the call enqueues; awaiting is not needed to keep one's place), so the coordinator
//!   can fire a write and await it later. An operation runs to completion even if its future is
//!   dropped. Operations on different groups run concurrently.
//! - **Acknowledged means durable.** A write resolves `Ok` only after the backend accepted all of
//!   it. On `Err` some of it may have been applied (each topic's offsets are one file); the
//!   client retries the commit and the retry overwrites.
//! - **Errors.** [`StoreError::Unavailable`] (filer unreachable, timeout, 5xx) is retriable: answer
//!   COORDINATOR_NOT_AVAILABLE. `Corrupt` and `Other` are not expected to heal by retrying.

mod codec;
pub mod escape;
mod fence;
mod filer;
pub(crate) mod filer_http;
mod gateway;
mod memory;
mod order;

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;

pub use codec::{
    decode_record, encode_consumer_record, DecodedRecord, StoredGroup, StoredMember,
    CONSUMER_RECORD_TAG, GROUP_RECORD_VERSION, OFFSETS_FILE_VERSION,
};
pub use filer::{FilerConfig, FilerStore};
pub use memory::MemoryStore;

/// Where one committed offset belongs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OffsetKey {
    pub group: String,
    pub topic: String,
    pub partition: i32,
}

/// One committed offset (Kafka's OffsetAndMetadata).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    /// -1 when unknown (commits before OffsetCommit v6, and everything imported from the gateway).
    pub leader_epoch: i32,
    /// "" when the client sent null.
    pub metadata: String,
    pub commit_timestamp_ms: i64,
    /// Set by OffsetCommit v2–4 RetentionTimeMs; overrides the retention rules.
    pub expire_timestamp_ms: Option<i64>,
}

/// A group record as the coordinator serialized it (normally [`StoredGroup::encode`]); the store
/// persists it as an opaque blob per group id.
pub type GroupRecord = Bytes;

/// `(topic, partition, offset)` triples, as written and loaded.
pub type TopicPartitionOffsets = Vec<(String, i32, CommittedOffset)>;

/// What every store operation returns: a boxed future, so `Arc<dyn Store>` works.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Why a store operation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The backend did not answer in time, refused the connection or answered 5xx. Retriable;
    /// the coordinator answers COORDINATOR_NOT_AVAILABLE.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Data in the store does not decode.
    #[error("corrupt store data: {0}")]
    Corrupt(String),
    /// Anything else (a 4xx, a name the filer cannot hold, a bad configuration).
    #[error("store error: {0}")]
    Other(String),
}

impl StoreError {
    /// True for errors a retry may cure ([`StoreError::Unavailable`]).
    pub fn is_retriable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// Durable offsets and group records, keyed by group id. See the module docs for ordering and
/// acknowledgement. Group ids and topics may be any string.
pub trait Store: Send + Sync + 'static {
    /// Stores these offsets for the group, replacing earlier ones of the same partitions.
    fn put_offsets(&self, group: &str, offsets: TopicPartitionOffsets) -> StoreFuture<'_, ()>;

    /// Removes these partitions' offsets (absent ones are fine).
    fn delete_offsets(&self, group: &str, partitions: Vec<(String, i32)>) -> StoreFuture<'_, ()>;

    /// Takes the group over for this store's writes (ownership epochs, `fence.rs`): starts a new
    /// epoch after the last owner's, so that whatever an earlier owner writes from now on is
    /// never read. Call it when adopting a group, before `load_group` and `load_offsets` (which
    /// then return what the claim read). Returns the new epoch. Stores that only one process
    /// uses (the in-memory one) just count.
    fn claim(&self, group: &str) -> StoreFuture<'_, u64>;

    /// Every committed offset of the group, sorted by topic then partition (empty if none).
    /// Call it (or `load_group`) when taking a group over: it also resets what the store
    /// remembers of the group's files from an earlier ownership.
    fn load_offsets(&self, group: &str) -> StoreFuture<'_, TopicPartitionOffsets>;

    /// Stores the group record, replacing the previous one.
    fn put_group(&self, group: &str, record: GroupRecord) -> StoreFuture<'_, ()>;

    /// The group record, if one is stored.
    fn load_group(&self, group: &str) -> StoreFuture<'_, Option<GroupRecord>>;

    /// Removes the group record and all of the group's offsets.
    fn delete_group(&self, group: &str) -> StoreFuture<'_, ()>;

    /// Every group with a record or offsets stored (no duplicates). The filer store may also
    /// list a group whose record and offsets are all gone (its directory is left); such a group
    /// loads as no record and no offsets.
    fn list_groups(&self) -> StoreFuture<'_, Vec<String>>;

    /// The offsets the SeaweedFS Kafka gateway committed for this group (read-only; empty when it
    /// has none), for the passthrough → local migration.
    fn import_gateway_offsets(&self, group: &str) -> StoreFuture<'_, TopicPartitionOffsets>;
}
