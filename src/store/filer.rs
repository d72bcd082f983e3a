//! [`FilerStore`]: kelp's offsets and group records as small files in the SeaweedFS filer, and
//! the read-only import of the Kafka gateway's own committed offsets.
//!
//! Layout under the prefix (default `/kelp`), names encoded by [`super::escape::encode_name`]:
//! ```text
//! <prefix>/groups/<group>/epoch/<E>                        ownership claims (fence.rs), highest wins
//! <prefix>/groups/<group>/record/<E>-<seq>                 the group record (opaque bytes, see StoredGroup)
//! <prefix>/groups/<group>/offsets/<topic>/<E>-<seq>        that topic's committed offsets (codec.rs format)
//! <prefix>/groups/<group>/group.bin, offsets/<topic>/<seq> the same, written before epochs (epoch 0)
//! ```
//! Every file carries the ownership epoch of the kelp that wrote it; `claim` starts a new epoch
//! and readers ignore what an earlier owner wrote after it (fence.rs).
//! A topic's offsets are one small file holding every partition, so a commit is one PUT per topic
//! (several topics: concurrent PUTs). The file is **written once**: each write goes to a new name,
//! `<seq>` = 20 decimal digits, strictly increasing (at least the wall clock in µs, and above any
//! seq seen or used), and readers take the highest. Older files are deleted in the background after
//! the new one was acknowledged. Why: the 4.48 filer still applies a PUT whose client timed out
//! and closed the connection (verified with SIGSTOP/SIGCONT), so a file overwritten in place could
//! be rolled back by a late, never-acknowledged write; with increasing names a late write lands
//! under an older seq and is ignored. Removing every partition of a topic writes an empty file
//! (a tombstone), for the same reason. The group record is written once per change the same way.
//!
//! The store keeps each topic's current file in memory while it writes the group, so a commit
//! is a single PUT. That copy is only right while this store is the group's sole writer, which
//! ownership guarantees; `load_group` and `load_offsets` drop it, so a group whose ownership came
//! back re-reads the filer first. An encoded group id or topic must fit the filer's 255-byte name
//! limit (every valid Kafka topic does; group ids up to 255 bytes of `[A-Za-z0-9._-]`, fewer with
//! other characters); longer ones are refused with `Other`.
//!
//! Ordering: every operation on one group goes through a per-group FIFO (`order.rs`), so
//! writes reach the filer one at a time in call order, and a load sees every write called before it.
//! Known limit: a write that timed out before `delete_group` may still land after it and bring
//! back that (never acknowledged) file.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::stream::{self, StreamExt, TryStreamExt};
use tokio::runtime::Handle;

use super::codec::{decode_offsets, encode_offsets};
use super::escape::{decode_name, encode_name, url_encode, url_segment, MAX_SEGMENT_BYTES};
use super::fence::{self, Claim, Manifest, Stamp};
use super::filer_http::{FilerHttp, HttpSettings};
use super::gateway::import_offsets;
use super::order::KeyedQueue;
use super::{CommittedOffset, GroupRecord, Store, StoreError, StoreFuture, TopicPartitionOffsets};

const RECORD_DIR: &str = "record";
const EPOCH_DIR: &str = "epoch";
const OFFSETS_DIR: &str = "offsets";
/// Parallel reads while loading one group's topics.
const LOAD_CONCURRENCY: usize = 16;

/// Where the filer is and how to talk to it.
#[derive(Clone, Debug)]
pub struct FilerConfig {
    /// The filer's HTTP API, `http://host:port`.
    pub url: String,
    /// kelp's directory in the filer.
    pub prefix: String,
    /// Where the Kafka gateway keeps committed offsets (4.48: `<root>/<group>/<topic>/<partition>/offset`).
    pub gateway_offsets_root: String,
    /// Bound on each HTTP exchange (connect, request, whole answer).
    pub request_timeout: Duration,
    /// Tries per read (GET, one listing page) when the filer is unavailable; writes get one.
    pub read_attempts: u32,
    /// Requests in flight to the filer at most, over all groups.
    pub max_in_flight: usize,
    /// Entries per listing page.
    pub list_page_size: usize,
    /// Who claims groups through this store (named in the epoch markers).
    pub owner: String,
}

impl FilerConfig {
    pub fn new(url: impl Into<String>) -> Self {
        FilerConfig {
            url: url.into(),
            prefix: "/kelp".into(),
            gateway_offsets_root: "/topics/kafka/.meta/consumer_offsets".into(),
            request_timeout: Duration::from_secs(5),
            read_attempts: 3,
            max_in_flight: 64,
            list_page_size: 1000,
            owner: String::new(),
        }
    }
}

/// A [`Store`] in the SeaweedFS filer (layout and ordering in the module docs).
pub struct FilerStore {
    inner: Arc<Inner>,
    queue: KeyedQueue,
}

type Partitions = BTreeMap<i32, CommittedOffset>;

/// What the store knows of one topic's offsets files.
#[derive(Default)]
struct TopicFile {
    partitions: Partitions,
    /// The name of the file holding `partitions` (none written yet: `None`).
    live: Option<String>,
    /// The highest epoch among the topic's file names when it was read.
    top_epoch: u64,
}

/// A group's state as one claim read it, handed to the loads that follow the claim.
struct Fresh {
    record: Option<GroupRecord>,
    topics: HashMap<String, TopicFile>,
}

struct Inner {
    http: Arc<FilerHttp>,
    runtime: Handle,
    /// URL-encoded `<prefix>/groups`.
    groups_dir: String,
    /// URL-encoded gateway offsets root.
    gateway_root: String,
    /// group → topic → its current file, as last written or read by this store.
    cache: Mutex<HashMap<String, HashMap<String, TopicFile>>>,
    /// The last sequence number handed out (by any group).
    last_seq: AtomicU64,
    /// group → the claim this store writes it under (none: epoch 0, unfenced).
    claims: Mutex<HashMap<String, Claim>>,
    /// group → what its claim read, until the loads take it.
    fresh: Mutex<HashMap<String, Fresh>>,
    /// The group record file each group's next write supersedes.
    records: Mutex<HashMap<String, String>>,
    owner: String,
}

impl FilerStore {
    /// Must be called inside a tokio runtime (operations run as tasks on it). Connects lazily.
    pub fn new(config: FilerConfig) -> Result<Self, StoreError> {
        let runtime = Handle::try_current()
            .map_err(|_| StoreError::Other("FilerStore::new needs a tokio runtime".into()))?;
        let http = FilerHttp::new(
            &config.url,
            HttpSettings {
                timeout: config.request_timeout,
                read_attempts: config.read_attempts,
                max_in_flight: config.max_in_flight,
                page_size: config.list_page_size.max(1),
                max_pages: 100_000,
            },
        )?;
        let inner = Inner {
            http: Arc::new(http),
            runtime: runtime.clone(),
            groups_dir: format!("{}/groups", dir_path(&config.prefix)),
            gateway_root: dir_path(&config.gateway_offsets_root),
            cache: Mutex::new(HashMap::new()),
            last_seq: AtomicU64::new(0),
            claims: Mutex::new(HashMap::new()),
            fresh: Mutex::new(HashMap::new()),
            records: Mutex::new(HashMap::new()),
            owner: config.owner.clone(),
        };
        Ok(FilerStore {
            inner: Arc::new(inner),
            queue: KeyedQueue::new(runtime),
        })
    }

    /// Queues `op` in the group's FIFO.
    fn queued<T, F, Fut>(&self, group: &str, op: F) -> StoreFuture<'static, T>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Inner>, String) -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        self.queue
            .submit(group, op(Arc::clone(&self.inner), group.to_string()))
    }
}

/// A configured directory as a URL path: leading `/`, no trailing `/`, encoded.
fn dir_path(raw: &str) -> String {
    let trimmed = raw.trim_matches('/');
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("/{}", url_encode(trimmed, true))
    }
}

/// An encoded name as a URL segment, refused when the filer could not store it.
fn segment(kind: &str, name: &str) -> Result<String, StoreError> {
    let enc = encode_name(name);
    if enc.len() > MAX_SEGMENT_BYTES {
        return Err(StoreError::Other(format!(
            "{kind} {name:?} is too long for the filer ({} bytes encoded, at most {MAX_SEGMENT_BYTES})",
            enc.len()
        )));
    }
    Ok(url_segment(&enc))
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inner {
    fn cache(&self) -> MutexGuard<'_, HashMap<String, HashMap<String, TopicFile>>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A fresh sequence number: above every earlier one of this store and above `floor`, and at
    /// least the wall clock in µs, so a store started later (a restart, a new owner) continues
    /// above what an earlier one could still have in flight.
    fn next_seq(&self, floor: u64) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let mut prev = self.last_seq.load(Ordering::Relaxed);
        loop {
            let seq = prev.saturating_add(1).max(now).max(floor.saturating_add(1));
            match self.last_seq.compare_exchange_weak(
                prev,
                seq,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return seq,
                Err(actual) => prev = actual,
            }
        }
    }

    /// Deletes a superseded file in the background (a failure only leaves garbage the next read
    /// of the topic deletes again).
    fn discard(&self, path: String) {
        let http = Arc::clone(&self.http);
        self.runtime.spawn(async move {
            if let Err(e) = http.delete(&path, false).await {
                tracing::debug!(path = %path, error = %e, "could not delete a superseded offsets file");
            }
        });
    }

    fn group_dir(&self, group: &str) -> Result<String, StoreError> {
        Ok(format!(
            "{}/{}",
            self.groups_dir,
            segment("group id", group)?
        ))
    }

    fn topic_dir(&self, group: &str, topic: &str) -> Result<String, StoreError> {
        Ok(format!(
            "{}/{OFFSETS_DIR}/{}",
            self.group_dir(group)?,
            segment("topic", topic)?
        ))
    }

    /// The claim `group` is written under by this store, if any.
    fn claim_of(&self, group: &str) -> Option<Claim> {
        locked(&self.claims).get(group).cloned()
    }

    /// The epoch this store writes `group` in (0 when it never claimed it).
    fn epoch_of(&self, group: &str) -> u64 {
        locked(&self.claims).get(group).map_or(0, |c| c.epoch)
    }

    /// The claim readers follow: this store's own, or else the highest marker in the filer.
    async fn reading_claim(&self, group: &str) -> Result<Option<Claim>, StoreError> {
        if let Some(c) = self.claim_of(group) {
            return Ok(Some(c));
        }
        Ok(self.latest_marker(group).await?.map(|(c, _)| c))
    }

    /// The highest epoch marker of `group` and every marker's epoch.
    async fn latest_marker(&self, group: &str) -> Result<Option<(Claim, Vec<u64>)>, StoreError> {
        let dir = format!("{}/{EPOCH_DIR}", self.group_dir(group)?);
        let Some(entries) = self.http.list(&dir).await? else {
            return Ok(None);
        };
        let mut epochs: Vec<u64> = entries
            .iter()
            .filter(|e| !e.is_dir)
            .filter_map(|e| fence::parse_marker(&e.name))
            .collect();
        epochs.sort_unstable();
        let Some(&top) = epochs.last() else {
            return Ok(None);
        };
        let path = format!("{dir}/{}", fence::marker_name(top));
        let Some(body) = self.http.get(&path).await? else {
            return Err(StoreError::Unavailable(format!(
                "{path} vanished between listing and reading"
            )));
        };
        let claim = Claim::decode(top, &body).map_err(StoreError::Corrupt)?;
        Ok(Some((claim, epochs)))
    }

    /// Reads a topic's live file under `claim` (and discards superseded ones). A missing topic
    /// is empty.
    async fn read_topic(
        &self,
        dir: &str,
        topic: &str,
        claim: Option<&Claim>,
    ) -> Result<TopicFile, StoreError> {
        let Some(entries) = self.http.list(dir).await? else {
            return Ok(TopicFile::default());
        };
        let picked = fence::pick(
            entries
                .iter()
                .filter(|e| !e.is_dir)
                .map(|e| e.name.as_str()),
            claim,
        );
        if !picked.later.is_empty() {
            tracing::info!(dir = %dir, later = ?picked.later, "offsets files of a later ownership epoch: another kelp claimed the group since this one did");
        }
        if !picked.ignored.is_empty() {
            tracing::info!(dir = %dir, ignored = ?picked.ignored, "ignoring offsets files of an earlier ownership epoch");
            for name in &picked.ignored {
                self.discard(format!("{dir}/{name}"));
            }
        }
        let top_epoch = picked.top_epoch;
        let Some((_, live)) = picked.live else {
            return Ok(TopicFile {
                top_epoch,
                ..TopicFile::default()
            });
        };
        let path = format!("{dir}/{live}");
        let Some(body) = self.http.get(&path).await? else {
            return Err(StoreError::Unavailable(format!(
                "{path} vanished between listing and reading"
            )));
        };
        let (named, parts) =
            decode_offsets(&body).map_err(|e| StoreError::Corrupt(format!("{path}: {e}")))?;
        if named != topic {
            return Err(StoreError::Corrupt(format!(
                "{path} holds offsets of topic {named:?}, not {topic:?}"
            )));
        }
        for old in picked.older {
            self.discard(format!("{dir}/{old}"));
        }
        Ok(TopicFile {
            partitions: parts.into_iter().collect(),
            live: Some(live.to_string()),
            top_epoch,
        })
    }

    /// Reads, changes and writes one topic (`change` says whether it changed anything). The
    /// cached copy is taken out while the write is in flight and put back only when the filer
    /// accepted it, so after a failure the next write re-reads the filer.
    async fn update_topic(
        &self,
        group: &str,
        topic: &str,
        change: impl FnOnce(&mut Partitions) -> bool,
    ) -> Result<(), StoreError> {
        let dir = self.topic_dir(group, topic)?;
        let cached = self
            .cache()
            .get_mut(group)
            .and_then(|topics| topics.remove(topic));
        let mut file = match cached {
            Some(f) => f,
            None => {
                let claim = self.reading_claim(group).await?;
                self.read_topic(&dir, topic, claim.as_ref()).await?
            }
        };
        if change(&mut file.partitions) && !(file.live.is_none() && file.partitions.is_empty()) {
            let floor = file
                .live
                .as_deref()
                .and_then(Stamp::parse)
                .map_or(0, |s| s.seq);
            let name = Stamp {
                epoch: self.epoch_of(group),
                seq: self.next_seq(floor),
            }
            .name();
            let body = encode_offsets(topic, file.partitions.iter().map(|(p, o)| (*p, o)));
            self.http.put(&format!("{dir}/{name}"), body).await?;
            tracing::trace!(group, topic, file = %name, offsets = ?file.partitions.iter().map(|(p, o)| (*p, o.offset)).collect::<Vec<_>>(), "offsets written");
            if let Some(old) = file.live.replace(name) {
                self.discard(format!("{dir}/{old}"));
            }
        }
        self.cache()
            .entry(group.to_string())
            .or_default()
            .insert(topic.to_string(), file);
        Ok(())
    }

    async fn put_offsets(
        &self,
        group: &str,
        offsets: TopicPartitionOffsets,
    ) -> Result<(), StoreError> {
        let mut by_topic: BTreeMap<String, Vec<(i32, CommittedOffset)>> = BTreeMap::new();
        for (topic, partition, o) in offsets {
            by_topic.entry(topic).or_default().push((partition, o));
        }
        let writes = by_topic.into_iter().map(|(topic, parts)| async move {
            self.update_topic(group, &topic, |map| {
                map.extend(parts);
                true
            })
            .await
        });
        futures::future::join_all(writes)
            .await
            .into_iter()
            .collect()
    }

    async fn delete_offsets(
        &self,
        group: &str,
        partitions: Vec<(String, i32)>,
    ) -> Result<(), StoreError> {
        let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for (topic, partition) in partitions {
            by_topic.entry(topic).or_default().push(partition);
        }
        let writes = by_topic.into_iter().map(|(topic, parts)| async move {
            self.update_topic(group, &topic, |map| {
                let before = map.len();
                map.retain(|p, _| !parts.contains(p));
                map.len() != before
            })
            .await
        });
        futures::future::join_all(writes)
            .await
            .into_iter()
            .collect()
    }

    /// Every topic's live file of `group` under `claim`.
    async fn read_topics(
        &self,
        group: &str,
        claim: Option<&Claim>,
    ) -> Result<HashMap<String, TopicFile>, StoreError> {
        let dir = format!("{}/{OFFSETS_DIR}", self.group_dir(group)?);
        let Some(entries) = self.http.list(&dir).await? else {
            return Ok(HashMap::new());
        };
        let topics: Vec<String> = entries
            .into_iter()
            .filter(|e| e.is_dir)
            .filter_map(|e| {
                let topic = decode_name(&e.name);
                if topic.is_none() {
                    tracing::warn!(dir = %dir, name = %e.name, "ignoring a directory kelp did not write");
                }
                topic
            })
            .collect();
        stream::iter(topics)
            .map(|topic| async move {
                let file = self
                    .read_topic(&self.topic_dir(group, &topic)?, &topic, claim)
                    .await?;
                Ok::<_, StoreError>((topic, file))
            })
            .buffer_unordered(LOAD_CONCURRENCY)
            .try_collect()
            .await
    }

    /// The live record file of `group` under `claim`: its name (relative to the group's
    /// directory) and contents, and the highest epoch among the record files.
    async fn read_record(
        &self,
        group: &str,
        claim: Option<&Claim>,
    ) -> Result<(Option<(String, GroupRecord)>, u64), StoreError> {
        let gdir = self.group_dir(group)?;
        let dir = format!("{gdir}/{RECORD_DIR}");
        let names: Vec<String> = self
            .http
            .list(&dir)
            .await?
            .unwrap_or_default()
            .into_iter()
            .filter(|e| !e.is_dir)
            .map(|e| e.name)
            .collect();
        let picked = fence::pick(names.iter().map(String::as_str), claim);
        for name in &picked.ignored {
            tracing::info!(group = %group, file = %name, "ignoring a group record of another ownership epoch");
            self.discard(format!("{dir}/{name}"));
        }
        let top = picked.top_epoch;
        if let Some((_, live)) = picked.live {
            let path = format!("{dir}/{live}");
            for old in picked.older {
                self.discard(format!("{dir}/{old}"));
            }
            return match self.http.get(&path).await? {
                Some(body) => Ok((Some((format!("{RECORD_DIR}/{live}"), body)), top)),
                None => Err(StoreError::Unavailable(format!(
                    "{path} vanished between listing and reading"
                ))),
            };
        }
        // Written before epochs: the in-place record (epoch 0), if the claim admits it.
        let legacy = fence::LEGACY_RECORD;
        if claim.is_some_and(|c| !c.admits(Stamp { epoch: 0, seq: 0 })) {
            return Ok((None, top));
        }
        let body = self.http.get(&format!("{gdir}/{legacy}")).await?;
        Ok((body.map(|b| (legacy.to_string(), b)), top))
    }

    /// Starts a new ownership epoch of `group` for this store: reads the group under the latest
    /// claim, takes an epoch above every one it saw, copies what it read into files of that
    /// epoch, then writes the epoch's marker. From then on only this epoch's files are read, so
    /// whatever an earlier owner writes or deletes afterwards changes nothing.
    async fn claim(&self, group: &str) -> Result<u64, StoreError> {
        let previous = self.latest_marker(group).await?;
        let (before, markers) = match previous {
            Some((c, e)) => (Some(c), e),
            None => (None, Vec::new()),
        };
        let mut topics = self.read_topics(group, before.as_ref()).await?;
        let (record, record_top) = self.read_record(group, before.as_ref()).await?;
        let epoch = topics
            .values()
            .map(|f| f.top_epoch)
            .chain(markers.iter().copied())
            .chain([record_top])
            .max()
            .unwrap_or(0)
            + 1;
        let gdir = self.group_dir(group)?;
        let mut manifest = Manifest {
            owner: self.owner.clone(),
            ..Manifest::default()
        };
        // What the copies supersede, deleted only once the marker stands.
        let mut superseded = Vec::new();
        // Copy forward: this epoch's files hold everything the claim read.
        for (topic, file) in topics.iter_mut() {
            if file.live.is_none() {
                continue;
            }
            let stamp = Stamp {
                epoch,
                seq: self.next_seq(0),
            };
            let body = encode_offsets(topic, file.partitions.iter().map(|(p, o)| (*p, o)));
            let dir = self.topic_dir(group, topic)?;
            self.http
                .put(&format!("{dir}/{}", stamp.name()), body)
                .await?;
            if let Some(old) = file.live.replace(stamp.name()) {
                superseded.push(format!("{dir}/{old}"));
            }
            manifest.topics.insert(encode_name(topic), stamp.name());
        }
        let record_name = match &record {
            Some((old, body)) => {
                let stamp = Stamp {
                    epoch,
                    seq: self.next_seq(0),
                };
                let name = format!("{RECORD_DIR}/{}", stamp.name());
                self.http
                    .put(&format!("{gdir}/{name}"), body.clone())
                    .await?;
                superseded.push(format!("{gdir}/{old}"));
                manifest.record = Some(stamp.name());
                Some(name)
            }
            None => None,
        };
        tracing::debug!(group, epoch, read_under = ?before.as_ref().map(|c| c.epoch), topics = ?topics.iter().map(|(t, f)| (t.clone(), f.live.clone(), f.partitions.iter().map(|(p, o)| (*p, o.offset)).collect::<Vec<_>>())).collect::<Vec<_>>(), "claiming the group");
        let claim = Claim { epoch, manifest };
        let dir = format!("{gdir}/{EPOCH_DIR}");
        self.http
            .put(
                &format!("{dir}/{}", fence::marker_name(epoch)),
                Bytes::from(claim.encode()),
            )
            .await?;
        for old in markers {
            self.discard(format!("{dir}/{}", fence::marker_name(old)));
        }
        for path in superseded {
            self.discard(path);
        }
        match record_name {
            Some(name) => locked(&self.records).insert(group.to_string(), name),
            None => locked(&self.records).remove(group),
        };
        locked(&self.claims).insert(group.to_string(), claim);
        locked(&self.fresh).insert(
            group.to_string(),
            Fresh {
                record: record.map(|(_, body)| body),
                topics,
            },
        );
        Ok(epoch)
    }

    async fn load_offsets(&self, group: &str) -> Result<TopicPartitionOffsets, StoreError> {
        self.cache().remove(group);
        let fresh = {
            let mut all = locked(&self.fresh);
            let topics = all.get_mut(group).map(|f| std::mem::take(&mut f.topics));
            if all.get(group).is_some_and(|f| f.record.is_none()) {
                all.remove(group);
            }
            topics
        };
        let loaded = match fresh {
            Some(topics) => topics,
            None => {
                let claim = self.reading_claim(group).await?;
                self.read_topics(group, claim.as_ref()).await?
            }
        };
        let mut out = Vec::new();
        for (topic, file) in &loaded {
            out.extend(
                file.partitions
                    .iter()
                    .map(|(p, o)| (topic.clone(), *p, o.clone())),
            );
        }
        out.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        self.cache().insert(group.to_string(), loaded);
        Ok(out)
    }

    async fn put_group(&self, group: &str, record: GroupRecord) -> Result<(), StoreError> {
        let gdir = self.group_dir(group)?;
        let stamp = Stamp {
            epoch: self.epoch_of(group),
            seq: self.next_seq(0),
        };
        let name = format!("{RECORD_DIR}/{}", stamp.name());
        self.http.put(&format!("{gdir}/{name}"), record).await?;
        if let Some(old) = locked(&self.records).insert(group.to_string(), name) {
            self.discard(format!("{gdir}/{old}"));
        }
        Ok(())
    }

    async fn load_group(&self, group: &str) -> Result<Option<GroupRecord>, StoreError> {
        self.cache().remove(group);
        let fresh = {
            let mut all = locked(&self.fresh);
            let record = all.get_mut(group).map(|f| f.record.take());
            if all.get(group).is_some_and(|f| f.topics.is_empty()) {
                all.remove(group);
            }
            record
        };
        if let Some(record) = fresh {
            return Ok(record);
        }
        let claim = self.reading_claim(group).await?;
        let (record, _) = self.read_record(group, claim.as_ref()).await?;
        Ok(record.map(|(name, body)| {
            locked(&self.records).insert(group.to_string(), name);
            body
        }))
    }

    /// Deletes the group's record and offsets. A claimed group keeps its epoch markers, so that a
    /// write an earlier owner makes later is still ignored (the group stays listed and loads
    /// empty, as the `Store` contract allows).
    async fn delete_group(&self, group: &str) -> Result<(), StoreError> {
        self.cache().remove(group);
        locked(&self.fresh).remove(group);
        locked(&self.records).remove(group);
        let gdir = self.group_dir(group)?;
        if self.claim_of(group).is_none() {
            // Never claimed through this store (no ownership epochs): the whole directory goes.
            return self.http.delete(&gdir, true).await;
        }
        for part in [RECORD_DIR, OFFSETS_DIR, fence::LEGACY_RECORD] {
            self.http.delete(&format!("{gdir}/{part}"), true).await?;
        }
        if let Some(claim) = locked(&self.claims).get_mut(group) {
            claim.manifest.record = None;
            claim.manifest.topics.clear();
        }
        Ok(())
    }

    async fn list_groups(&self) -> Result<Vec<String>, StoreError> {
        let Some(entries) = self.http.list(&self.groups_dir).await? else {
            return Ok(Vec::new());
        };
        Ok(entries
            .into_iter()
            .filter(|e| e.is_dir)
            .filter_map(|e| {
                let name = decode_name(&e.name);
                if name.is_none() {
                    tracing::warn!(dir = %self.groups_dir, name = %e.name, "ignoring a directory kelp did not write");
                }
                name
            })
            .collect())
    }
}

impl Store for FilerStore {
    fn put_offsets(&self, group: &str, offsets: TopicPartitionOffsets) -> StoreFuture<'_, ()> {
        self.queued(
            group,
            |s, g| async move { s.put_offsets(&g, offsets).await },
        )
    }

    fn delete_offsets(&self, group: &str, partitions: Vec<(String, i32)>) -> StoreFuture<'_, ()> {
        self.queued(group, |s, g| async move {
            s.delete_offsets(&g, partitions).await
        })
    }

    fn claim(&self, group: &str) -> StoreFuture<'_, u64> {
        self.queued(group, |s, g| async move { s.claim(&g).await })
    }

    fn load_offsets(&self, group: &str) -> StoreFuture<'_, TopicPartitionOffsets> {
        self.queued(group, |s, g| async move { s.load_offsets(&g).await })
    }

    fn put_group(&self, group: &str, record: GroupRecord) -> StoreFuture<'_, ()> {
        self.queued(group, |s, g| async move { s.put_group(&g, record).await })
    }

    fn load_group(&self, group: &str) -> StoreFuture<'_, Option<GroupRecord>> {
        self.queued(group, |s, g| async move { s.load_group(&g).await })
    }

    fn delete_group(&self, group: &str) -> StoreFuture<'_, ()> {
        self.queued(group, |s, g| async move { s.delete_group(&g).await })
    }

    fn list_groups(&self) -> StoreFuture<'_, Vec<String>> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move { inner.list_groups().await })
    }

    fn import_gateway_offsets(&self, group: &str) -> StoreFuture<'_, TopicPartitionOffsets> {
        let inner = Arc::clone(&self.inner);
        let group = group.to_string();
        Box::pin(async move { import_offsets(&inner.http, &inner.gateway_root, &group).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_encoded_once_for_the_filer_and_once_for_the_url() {
        assert_eq!(dir_path("/kelp/"), "/kelp");
        assert_eq!(dir_path("kelp data"), "/kelp%20data");
        assert_eq!(dir_path("/"), "");
        assert_eq!(segment("group id", "a/b").ok().as_deref(), Some("a%252Fb"));
        assert_eq!(segment("topic", "orders").ok().as_deref(), Some("orders"));
        assert!(segment("group id", &"x".repeat(256)).is_err());
        assert!(
            segment("topic", &"t".repeat(249)).is_ok(),
            "every legal Kafka topic fits"
        );
        assert!(segment("topic", &format!(".{}", "t".repeat(248))).is_ok());
    }

    #[tokio::test]
    async fn sequence_numbers_only_go_up() {
        let store = FilerStore::new(FilerConfig::new("http://127.0.0.1:1")).expect("store");
        let a = store.inner.next_seq(0);
        let b = store.inner.next_seq(0);
        let c = store.inner.next_seq(u64::MAX - 5);
        let d = store.inner.next_seq(0);
        assert!(a < b && b < c && c < d, "{a} {b} {c} {d}");
        assert_eq!(c, u64::MAX - 4);
    }
}
