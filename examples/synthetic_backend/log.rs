//! The synthetic backend's in-memory log: topics of partitions of record batches, kept as the
//! `Bytes` the producer sent (no copy on produce); base offsets are patched when a fetch copies them.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};

use bytes::{BufMut, Bytes, BytesMut};

/// Kafka error codes the synthetic backend answers with.
pub mod error {
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    pub const CORRUPT_MESSAGE: i16 = 2;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const TOPIC_ALREADY_EXISTS: i16 = 36;
    pub const INVALID_PARTITIONS: i16 = 37;
}

/// Most record batches one produce of one partition may carry.
const MAX_BATCHES_PER_PRODUCE: usize = 100_000;

/// One stored record batch: `count` offsets starting at `base`.
struct Batch {
    base: i64,
    count: i64,
    data: Bytes,
}

#[derive(Default)]
pub struct Partition {
    batches: VecDeque<Batch>,
    log_start: i64,
    next: i64,
    bytes: usize,
}

/// What a fetch of one partition returns.
pub struct Fetched {
    pub error_code: i16,
    pub high_watermark: i64,
    pub log_start: i64,
    pub records: Option<Bytes>,
}

impl Partition {
    pub fn log_start(&self) -> i64 {
        self.log_start
    }

    pub fn end(&self) -> i64 {
        self.next
    }

    /// Appends every batch of a produce; returns the base offset of the first, or an error code.
    /// The oldest batches are dropped once the partition holds more than `retain` bytes.
    pub fn append(&mut self, records: &Bytes, retain: usize) -> Result<i64, i16> {
        let mut parsed = Vec::new();
        let mut pos = 0;
        while pos < records.len() {
            if parsed.len() >= MAX_BATCHES_PER_PRODUCE {
                return Err(error::CORRUPT_MESSAGE);
            }
            let (len, count) = batch_header(&records[pos..]).ok_or(error::CORRUPT_MESSAGE)?;
            parsed.push((records.slice(pos..pos + len), count));
            pos += len;
        }
        let first = self.next;
        for (data, count) in parsed {
            self.bytes += data.len();
            self.batches.push_back(Batch {
                base: self.next,
                count,
                data,
            });
            self.next += count;
        }
        while self.bytes > retain && self.batches.len() > 1 {
            let Some(old) = self.batches.pop_front() else {
                break;
            };
            self.bytes -= old.data.len();
            self.log_start = old.base + old.count;
        }
        Ok(first)
    }

    /// Batches from `offset` on, at most `max_bytes` but always the first one (KIP-74).
    pub fn fetch(&self, offset: i64, max_bytes: usize) -> Fetched {
        let mut fetched = Fetched {
            error_code: 0,
            high_watermark: self.next,
            log_start: self.log_start,
            records: None,
        };
        if offset < self.log_start || offset > self.next {
            fetched.error_code = error::OFFSET_OUT_OF_RANGE;
            return fetched;
        }
        // The first batch whose last offset is at or past `offset`.
        let start = self.batches.partition_point(|b| b.base + b.count <= offset);
        let mut out = BytesMut::new();
        for batch in self.batches.range(start..) {
            if !out.is_empty() && out.len() + batch.data.len() > max_bytes {
                break;
            }
            let at = out.len();
            out.extend_from_slice(&batch.data);
            out[at..at + 8].copy_from_slice(&batch.base.to_be_bytes());
        }
        fetched.records = Some(out.freeze());
        fetched
    }
}

/// Length and record count of the v2 record batch at the start of `buf`, when it is whole.
pub fn batch_header(buf: &[u8]) -> Option<(usize, i64)> {
    let batch_length = i32::from_be_bytes(buf.get(8..12)?.try_into().ok()?);
    let len = 12usize.checked_add(usize::try_from(batch_length).ok()?)?;
    if len < 61 || len > buf.len() || buf[16] != 2 {
        return None;
    }
    let last_offset_delta = i32::from_be_bytes(buf[23..27].try_into().ok()?);
    Some((len, i64::from(last_offset_delta) + 1))
}

pub type Topic = Arc<Vec<Mutex<Partition>>>;

/// Every topic, created on first use (or by CreateTopics).
pub struct Log {
    topics: RwLock<HashMap<String, Topic>>,
    pub default_partitions: i32,
    pub retain_bytes: usize,
}

impl Log {
    pub fn new(default_partitions: i32, retain_bytes: usize) -> Log {
        Log {
            topics: RwLock::new(HashMap::new()),
            default_partitions,
            retain_bytes,
        }
    }

    pub fn get(&self, name: &str) -> Option<Topic> {
        self.topics.read().ok()?.get(name).cloned()
    }

    /// The topic, created with the default partition count when `create` allows it.
    pub fn get_or_create(&self, name: &str, create: bool) -> Option<Topic> {
        if let Some(topic) = self.get(name) {
            return Some(topic);
        }
        if !create || name.is_empty() {
            return None;
        }
        let _ = self.create(name, self.default_partitions);
        self.get(name)
    }

    /// Creates a topic; an error code when it exists or the partition count is wrong.
    pub fn create(&self, name: &str, partitions: i32) -> Result<(), i16> {
        let partitions = if partitions < 0 {
            self.default_partitions
        } else {
            partitions
        };
        if !(1..=10_000).contains(&partitions) {
            return Err(error::INVALID_PARTITIONS);
        }
        let mut topics = self.topics.write().map_err(|_| error::INVALID_PARTITIONS)?;
        if topics.contains_key(name) {
            return Err(error::TOPIC_ALREADY_EXISTS);
        }
        let parts = (0..partitions).map(|_| Mutex::default()).collect();
        topics.insert(name.to_string(), Arc::new(parts));
        Ok(())
    }

    /// Every topic name with its partition count, sorted.
    pub fn list(&self) -> Vec<(String, usize)> {
        let Ok(topics) = self.topics.read() else {
            return Vec::new();
        };
        let mut list: Vec<_> = topics.iter().map(|(k, v)| (k.clone(), v.len())).collect();
        list.sort();
        list
    }
}

/// Writes a 4-byte big-endian length placeholder at the end of `out`; returns where it is.
pub fn begin_frame(out: &mut BytesMut) -> usize {
    let at = out.len();
    out.put_i32(0);
    at
}

/// Fills in the length placeholder written by `begin_frame`.
pub fn end_frame(out: &mut BytesMut, at: usize) {
    let len = (out.len() - at - 4) as i32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(count: i32, payload: usize) -> Vec<u8> {
        let mut b = vec![0u8; 61 + payload];
        let len = (b.len() - 12) as i32;
        b[8..12].copy_from_slice(&len.to_be_bytes());
        b[16] = 2;
        b[23..27].copy_from_slice(&(count - 1).to_be_bytes());
        b
    }

    #[test]
    fn offsets_retention_and_fetch() {
        let mut p = Partition::default();
        let two: Vec<u8> = [batch(3, 10), batch(2, 10)].concat();
        assert_eq!(p.append(&Bytes::from(two), 1 << 20), Ok(0));
        assert_eq!(p.append(&Bytes::from(batch(1, 10)), 1 << 20), Ok(5));
        let f = p.fetch(4, 1 << 20);
        let records = f.records.unwrap();
        assert_eq!(f.high_watermark, 6);
        assert_eq!(&records[..8], &3i64.to_be_bytes());
        assert_eq!(p.fetch(7, 100).error_code, error::OFFSET_OUT_OF_RANGE);
        assert_eq!(p.append(&Bytes::from(vec![1, 2, 3]), 1 << 20), Err(2));
        p.append(&Bytes::from(batch(1, 200)), 100).unwrap();
        assert_eq!(p.log_start(), 6);
    }
}
