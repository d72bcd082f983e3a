//! [`MemoryStore`]: the [`Store`] contract in memory, for unit tests of the coordinator shell.
//! Every operation takes effect when the method is called (so call order is apply order), and a
//! switch makes every operation fail with `Unavailable` to exercise the error paths.

use std::collections::{BTreeMap, BTreeSet};
use std::future::ready;
use std::sync::{Mutex, MutexGuard};

use super::{CommittedOffset, GroupRecord, Store, StoreError, StoreFuture, TopicPartitionOffsets};

type Offsets = BTreeMap<(String, i32), CommittedOffset>;

#[derive(Default)]
struct Inner {
    unavailable: bool,
    records: BTreeMap<String, GroupRecord>,
    offsets: BTreeMap<String, Offsets>,
    gateway: BTreeMap<String, TopicPartitionOffsets>,
    epochs: BTreeMap<String, u64>,
    writes: u64,
}

/// An in-memory [`Store`]. Cheap; wrap it in an `Arc` to share it with the code under test.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// While `false`, every operation fails with [`StoreError::Unavailable`] and changes nothing.
    pub fn set_available(&self, available: bool) {
        self.lock().unavailable = !available;
    }

    /// What [`Store::import_gateway_offsets`] returns for `group`.
    pub fn set_gateway_offsets(&self, group: &str, offsets: TopicPartitionOffsets) {
        self.lock().gateway.insert(group.to_string(), offsets);
    }

    /// The epoch of `group`'s last claim (0: never claimed).
    pub fn epoch_of(&self, group: &str) -> u64 {
        self.lock().epochs.get(group).copied().unwrap_or(0)
    }

    /// How many writes (puts and deletes) succeeded so far.
    pub fn writes(&self) -> u64 {
        self.lock().writes
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic in another test thread must not poison every later call.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` now, under the lock, unless the store is switched off.
    fn run<T: Send + 'static>(
        &self,
        write: bool,
        f: impl FnOnce(&mut Inner) -> T,
    ) -> StoreFuture<'_, T> {
        let mut inner = self.lock();
        let result = if inner.unavailable {
            Err(StoreError::Unavailable("memory store switched off".into()))
        } else {
            if write {
                inner.writes += 1;
            }
            Ok(f(&mut inner))
        };
        Box::pin(ready(result))
    }
}

fn flatten(offsets: Option<&Offsets>) -> TopicPartitionOffsets {
    offsets
        .into_iter()
        .flatten()
        .map(|((t, p), o)| (t.clone(), *p, o.clone()))
        .collect()
}

impl Store for MemoryStore {
    fn put_offsets(&self, group: &str, offsets: TopicPartitionOffsets) -> StoreFuture<'_, ()> {
        self.run(true, |inner| {
            let map = inner.offsets.entry(group.to_string()).or_default();
            for (topic, partition, o) in offsets {
                map.insert((topic, partition), o);
            }
        })
    }

    fn delete_offsets(&self, group: &str, partitions: Vec<(String, i32)>) -> StoreFuture<'_, ()> {
        self.run(true, |inner| {
            if let Some(map) = inner.offsets.get_mut(group) {
                for key in partitions {
                    map.remove(&key);
                }
                if map.is_empty() {
                    inner.offsets.remove(group);
                }
            }
        })
    }

    fn claim(&self, group: &str) -> StoreFuture<'_, u64> {
        self.run(false, |inner| {
            let epoch = inner.epochs.entry(group.to_string()).or_default();
            *epoch += 1;
            *epoch
        })
    }

    fn load_offsets(&self, group: &str) -> StoreFuture<'_, TopicPartitionOffsets> {
        self.run(false, |inner| flatten(inner.offsets.get(group)))
    }

    fn put_group(&self, group: &str, record: GroupRecord) -> StoreFuture<'_, ()> {
        self.run(true, |inner| {
            inner.records.insert(group.to_string(), record);
        })
    }

    fn load_group(&self, group: &str) -> StoreFuture<'_, Option<GroupRecord>> {
        self.run(false, |inner| inner.records.get(group).cloned())
    }

    fn delete_group(&self, group: &str) -> StoreFuture<'_, ()> {
        self.run(true, |inner| {
            inner.records.remove(group);
            inner.offsets.remove(group);
        })
    }

    fn list_groups(&self) -> StoreFuture<'_, Vec<String>> {
        self.run(false, |inner| {
            let all: BTreeSet<&String> = inner.records.keys().chain(inner.offsets.keys()).collect();
            all.into_iter().cloned().collect()
        })
    }

    fn import_gateway_offsets(&self, group: &str) -> StoreFuture<'_, TopicPartitionOffsets> {
        self.run(false, |inner| {
            inner.gateway.get(group).cloned().unwrap_or_default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn off(o: i64) -> CommittedOffset {
        CommittedOffset {
            offset: o,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp_ms: 1,
            expire_timestamp_ms: None,
        }
    }

    fn block<T>(f: StoreFuture<'_, T>) -> Result<T, StoreError> {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn offsets_and_records_behave_like_the_filer() {
        let s = MemoryStore::new();
        block(s.put_offsets("g", vec![("t".into(), 1, off(5)), ("t".into(), 0, off(3))]))
            .expect("put");
        block(s.put_offsets("g", vec![("t".into(), 1, off(6))])).expect("overwrite");
        let got = block(s.load_offsets("g")).expect("load");
        assert_eq!(got, vec![("t".into(), 0, off(3)), ("t".into(), 1, off(6))]);
        block(s.delete_offsets("g", vec![("t".into(), 0)])).expect("delete");
        assert_eq!(block(s.load_offsets("g")).expect("load").len(), 1);
        block(s.put_group("h", Bytes::from_static(b"rec"))).expect("put group");
        assert_eq!(
            block(s.list_groups()).expect("list"),
            vec!["g".to_string(), "h".to_string()]
        );
        block(s.delete_group("g")).expect("delete group");
        assert_eq!(block(s.load_offsets("g")).expect("load"), vec![]);
        assert_eq!(
            block(s.load_group("h")).expect("load"),
            Some(Bytes::from_static(b"rec"))
        );
        assert_eq!(
            block(s.import_gateway_offsets("h")).expect("import"),
            vec![]
        );
    }

    #[test]
    fn switched_off_fails_and_changes_nothing() {
        let s = MemoryStore::new();
        s.set_available(false);
        let err = block(s.put_offsets("g", vec![("t".into(), 0, off(1))])).expect_err("off");
        assert!(err.is_retriable());
        s.set_available(true);
        assert_eq!(block(s.load_offsets("g")).expect("load"), vec![]);
        assert_eq!(s.writes(), 0);
    }

    #[test]
    fn works_behind_a_shared_trait_object() {
        let s: std::sync::Arc<dyn Store> = std::sync::Arc::new(MemoryStore::new());
        block(s.put_group("g", Bytes::from_static(b"r"))).expect("put");
        assert_eq!(block(s.list_groups()).expect("list"), vec!["g".to_string()]);
    }

    #[test]
    fn call_order_is_apply_order() {
        let s = MemoryStore::new();
        let futs: Vec<_> = (0..10)
            .map(|i| s.put_offsets("g", vec![("t".into(), 0, off(i))]))
            .collect();
        for f in futs.into_iter().rev() {
            block(f).expect("put");
        }
        assert_eq!(block(s.load_offsets("g")).expect("load")[0].2.offset, 9);
    }
}
