//! Binary formats of what kelp keeps in the filer: the group record ([`StoredGroup`], modelled on
//! Kafka's GroupMetadataValue) and one topic's committed offsets. Versioned, length-prefixed,
//! big-endian. Decoding checks every length against what is left and returns `Corrupt` on
//! truncated, oversized, trailing or unknown input; it never panics and never allocates more
//! than the input could hold.
//!
//! Primitive encodings: `i32`/`i64` big-endian; a string or byte blob is a `u32` length then the
//! bytes (strings UTF-8); an optional string is an `i32` length with `-1` for none.

use bytes::{BufMut, Bytes, BytesMut};

use super::{CommittedOffset, StoreError};
use crate::group::consumer::ConsumerGroupRecord;

/// Version byte of the group record format written by [`StoredGroup::encode`].
pub const GROUP_RECORD_VERSION: u8 = 1;
/// First byte of a consumer group's record (KIP-848): JSON of `ConsumerGroupRecord` follows. The
/// classic record's version byte is 1, so one read tells the two apart.
pub const CONSUMER_RECORD_TAG: u8 = b'{';
/// Version byte of a topic's offsets file.
pub const OFFSETS_FILE_VERSION: u8 = 1;

/// A group as persisted at Kafka's persistence points (GROUP_SEMANTICS.md §3.9). The coordinator
/// maps its in-memory group to and from this; the store only sees the encoded bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoredGroup {
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub generation: i32,
    pub leader: Option<String>,
    /// When the group entered its current state (ms since the epoch); retention uses it.
    pub state_timestamp_ms: i64,
    pub members: Vec<StoredMember>,
}

/// One member of a [`StoredGroup`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoredMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    /// The metadata the member sent for the group's selected protocol.
    pub subscription: Bytes,
    /// What the leader assigned to it at the last SyncGroup.
    pub assignment: Bytes,
}

/// A group record as read: a classic group's or a consumer group's.
#[derive(Debug)]
pub enum DecodedRecord {
    Classic(StoredGroup),
    Consumer(Box<ConsumerGroupRecord>),
}

/// A consumer group's record as bytes for [`super::Store::put_group`]: its JSON, which starts with
/// [`CONSUMER_RECORD_TAG`].
pub fn encode_consumer_record(record: &ConsumerGroupRecord) -> Bytes {
    // Serialising plain data structures to JSON cannot fail.
    Bytes::from(serde_json::to_vec(record).unwrap_or_default())
}

/// Decodes either kind of group record; `Corrupt` on anything else.
pub fn decode_record(buf: &[u8]) -> Result<DecodedRecord, StoreError> {
    if buf.first() == Some(&CONSUMER_RECORD_TAG) {
        return serde_json::from_slice(buf)
            .map(|r| DecodedRecord::Consumer(Box::new(r)))
            .map_err(|e| StoreError::Corrupt(format!("consumer group record: {e}")));
    }
    StoredGroup::decode(buf).map(DecodedRecord::Classic)
}

impl StoredGroup {
    /// The record as bytes for [`super::Store::put_group`].
    pub fn encode(&self) -> Bytes {
        let mut w = BytesMut::with_capacity(64 + self.members.len() * 128);
        w.put_u8(GROUP_RECORD_VERSION);
        put_opt_str(&mut w, self.protocol_type.as_deref());
        put_opt_str(&mut w, self.protocol_name.as_deref());
        w.put_i32(self.generation);
        put_opt_str(&mut w, self.leader.as_deref());
        w.put_i64(self.state_timestamp_ms);
        put_len(&mut w, self.members.len());
        for m in &self.members {
            put_bytes(&mut w, m.member_id.as_bytes());
            put_opt_str(&mut w, m.group_instance_id.as_deref());
            put_bytes(&mut w, m.client_id.as_bytes());
            put_bytes(&mut w, m.client_host.as_bytes());
            w.put_i32(m.rebalance_timeout_ms);
            w.put_i32(m.session_timeout_ms);
            put_bytes(&mut w, &m.subscription);
            put_bytes(&mut w, &m.assignment);
        }
        w.freeze()
    }

    /// Decodes a record made by [`StoredGroup::encode`]; `Corrupt` on anything else.
    pub fn decode(buf: &[u8]) -> Result<StoredGroup, StoreError> {
        let mut r = Reader::new(buf, "group record");
        let version = r.u8()?;
        if version != GROUP_RECORD_VERSION {
            return Err(r.corrupt(&format!("unsupported version {version}")));
        }
        let protocol_type = r.opt_str()?;
        let protocol_name = r.opt_str()?;
        let generation = r.i32()?;
        let leader = r.opt_str()?;
        let state_timestamp_ms = r.i64()?;
        // A member takes at least 32 bytes, so the count cannot promise more than the input holds.
        let count = r.count(32)?;
        let mut members = Vec::with_capacity(count);
        for _ in 0..count {
            members.push(StoredMember {
                member_id: r.str()?,
                group_instance_id: r.opt_str()?,
                client_id: r.str()?,
                client_host: r.str()?,
                rebalance_timeout_ms: r.i32()?,
                session_timeout_ms: r.i32()?,
                subscription: Bytes::copy_from_slice(r.bytes()?),
                assignment: Bytes::copy_from_slice(r.bytes()?),
            });
        }
        r.finish()?;
        Ok(StoredGroup {
            protocol_type,
            protocol_name,
            generation,
            leader,
            state_timestamp_ms,
            members,
        })
    }
}

/// Encodes one topic's committed offsets (partition order as given).
pub(crate) fn encode_offsets<'a>(
    topic: &str,
    partitions: impl ExactSizeIterator<Item = (i32, &'a CommittedOffset)>,
) -> Bytes {
    let mut w = BytesMut::with_capacity(16 + topic.len() + partitions.len() * 40);
    w.put_u8(OFFSETS_FILE_VERSION);
    put_bytes(&mut w, topic.as_bytes());
    put_len(&mut w, partitions.len());
    for (partition, o) in partitions {
        w.put_i32(partition);
        w.put_i64(o.offset);
        w.put_i32(o.leader_epoch);
        w.put_i64(o.commit_timestamp_ms);
        match o.expire_timestamp_ms {
            Some(t) => {
                w.put_u8(1);
                w.put_i64(t);
            }
            None => w.put_u8(0),
        }
        put_bytes(&mut w, o.metadata.as_bytes());
    }
    w.freeze()
}

/// Decodes a topic's offsets file: the topic it names and its partitions.
pub(crate) fn decode_offsets(
    buf: &[u8],
) -> Result<(String, Vec<(i32, CommittedOffset)>), StoreError> {
    let mut r = Reader::new(buf, "offsets file");
    let version = r.u8()?;
    if version != OFFSETS_FILE_VERSION {
        return Err(r.corrupt(&format!("unsupported version {version}")));
    }
    let topic = r.str()?;
    let count = r.count(29)?;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let partition = r.i32()?;
        let offset = r.i64()?;
        let leader_epoch = r.i32()?;
        let commit_timestamp_ms = r.i64()?;
        let expire_timestamp_ms = match r.u8()? {
            0 => None,
            1 => Some(r.i64()?),
            other => return Err(r.corrupt(&format!("bad expire flag {other}"))),
        };
        let metadata = r.str()?;
        out.push((
            partition,
            CommittedOffset {
                offset,
                leader_epoch,
                metadata,
                commit_timestamp_ms,
                expire_timestamp_ms,
            },
        ));
    }
    r.finish()?;
    Ok((topic, out))
}

fn put_len(w: &mut BytesMut, len: usize) {
    // Lengths above u32::MAX cannot be stored in the filer anyway; saturate rather than wrap so
    // the decoder rejects the record instead of misreading it.
    w.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
}

fn put_bytes(w: &mut BytesMut, b: &[u8]) {
    put_len(w, b.len());
    w.put_slice(b);
}

fn put_opt_str(w: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => {
            w.put_i32(i32::try_from(s.len()).unwrap_or(i32::MAX));
            w.put_slice(s.as_bytes());
        }
        None => w.put_i32(-1),
    }
}

/// A bounds-checked cursor over an input that may be anything.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, pos: 0, what }
    }

    fn corrupt(&self, msg: &str) -> StoreError {
        StoreError::Corrupt(format!("{} at byte {}: {msg}", self.what, self.pos))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        let left = self.buf.len() - self.pos;
        if n > left {
            return Err(self.corrupt(&format!("truncated (need {n} bytes, {left} left)")));
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], StoreError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, StoreError> {
        Ok(self.array::<1>()?[0])
    }

    fn i32(&mut self) -> Result<i32, StoreError> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64, StoreError> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    fn len(&mut self) -> Result<usize, StoreError> {
        let n = u32::from_be_bytes(self.array()?);
        usize::try_from(n).map_err(|_| self.corrupt("length does not fit"))
    }

    /// An element count, checked against the input left given each element's minimum size.
    fn count(&mut self, min_element_bytes: usize) -> Result<usize, StoreError> {
        let n = self.len()?;
        let left = self.buf.len() - self.pos;
        if n > left / min_element_bytes.max(1) {
            return Err(self.corrupt(&format!("count {n} cannot fit in {left} bytes")));
        }
        Ok(n)
    }

    fn bytes(&mut self) -> Result<&'a [u8], StoreError> {
        let n = self.len()?;
        self.take(n)
    }

    fn utf8(&self, b: &[u8]) -> Result<String, StoreError> {
        String::from_utf8(b.to_vec()).map_err(|_| self.corrupt("string is not UTF-8"))
    }

    fn str(&mut self) -> Result<String, StoreError> {
        let b = self.bytes()?;
        self.utf8(b)
    }

    fn opt_str(&mut self) -> Result<Option<String>, StoreError> {
        let n = self.i32()?;
        if n == -1 {
            return Ok(None);
        }
        let n = usize::try_from(n).map_err(|_| self.corrupt(&format!("bad string length {n}")))?;
        let b = self.take(n)?;
        self.utf8(b).map(Some)
    }

    fn finish(&self) -> Result<(), StoreError> {
        match self.buf.len() - self.pos {
            0 => Ok(()),
            n => Err(self.corrupt(&format!("{n} trailing bytes"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample_group() -> StoredGroup {
        StoredGroup {
            protocol_type: Some("consumer".into()),
            protocol_name: Some("range".into()),
            generation: 7,
            leader: Some("m-1".into()),
            state_timestamp_ms: 1_795_628_743_678,
            members: vec![
                StoredMember {
                    member_id: "m-1".into(),
                    group_instance_id: None,
                    client_id: "c1".into(),
                    client_host: "/127.0.0.1".into(),
                    rebalance_timeout_ms: 300_000,
                    session_timeout_ms: 45_000,
                    subscription: Bytes::from_static(b"\x00\x01\x00\x00\x00\x01\x00\x01t"),
                    assignment: Bytes::from_static(b"\x00\x01assign"),
                },
                StoredMember {
                    member_id: "m-2 ü".into(),
                    group_instance_id: Some("static-2".into()),
                    client_id: String::new(),
                    client_host: "/10.0.0.2".into(),
                    rebalance_timeout_ms: -1,
                    session_timeout_ms: 6000,
                    subscription: Bytes::new(),
                    assignment: Bytes::new(),
                },
            ],
        }
    }

    fn offset(o: i64, meta: &str, expire: Option<i64>) -> CommittedOffset {
        CommittedOffset {
            offset: o,
            leader_epoch: 3,
            metadata: meta.into(),
            commit_timestamp_ms: 42,
            expire_timestamp_ms: expire,
        }
    }

    #[test]
    fn consumer_records_and_classic_records_are_told_apart() {
        use crate::group::consumer::ConsumerGroupRecord;
        let consumer = ConsumerGroupRecord {
            group_id: "g".into(),
            group_epoch: 7,
            assignment_epoch: 7,
            subscription_metadata: Default::default(),
            members: Vec::new(),
        };
        let bytes = encode_consumer_record(&consumer);
        assert_eq!(bytes.first(), Some(&CONSUMER_RECORD_TAG));
        match decode_record(&bytes).unwrap() {
            DecodedRecord::Consumer(r) => assert_eq!(*r, consumer),
            other => panic!("{other:?}"),
        }
        let classic = sample_group().encode();
        assert!(matches!(
            decode_record(&classic).unwrap(),
            DecodedRecord::Classic(g) if g == sample_group()
        ));
        assert!(decode_record(b"{not json").is_err());
    }

    #[test]
    fn group_record_round_trips() {
        for g in [
            sample_group(),
            StoredGroup::default(),
            StoredGroup {
                members: vec![],
                leader: None,
                ..sample_group()
            },
        ] {
            let bytes = g.encode();
            assert_eq!(bytes[0], GROUP_RECORD_VERSION);
            assert_eq!(StoredGroup::decode(&bytes).ok(), Some(g));
        }
    }

    #[test]
    fn offsets_round_trip() {
        let a = offset(714, "", None);
        let b = offset(-1, "meta ü", Some(99));
        let bytes = encode_offsets("orders.v2", [(0, &a), (5, &b)].into_iter());
        let (topic, parts) = decode_offsets(&bytes).expect("decodes");
        assert_eq!(topic, "orders.v2");
        assert_eq!(parts, vec![(0, a), (5, b)]);
    }

    #[test]
    fn every_truncation_and_extension_is_an_error() {
        let g = sample_group().encode();
        for n in 0..g.len() {
            assert!(
                matches!(StoredGroup::decode(&g[..n]), Err(StoreError::Corrupt(_))),
                "prefix {n}"
            );
        }
        let mut longer = g.to_vec();
        longer.push(0);
        assert!(matches!(
            StoredGroup::decode(&longer),
            Err(StoreError::Corrupt(_))
        ));
        let o = encode_offsets("t", [(1, &offset(1, "x", Some(2)))].into_iter());
        for n in 0..o.len() {
            assert!(decode_offsets(&o[..n]).is_err(), "prefix {n}");
        }
    }

    #[test]
    fn unknown_version_is_corrupt() {
        let mut g = sample_group().encode().to_vec();
        g[0] = 2;
        let err = StoredGroup::decode(&g).expect_err("version 2 is not known");
        assert!(err.to_string().contains("unsupported version 2"), "{err}");
    }

    #[test]
    fn huge_counts_do_not_allocate() {
        // version, 3 null strings' worth of fields, then a member count of u32::MAX.
        let mut b = vec![GROUP_RECORD_VERSION];
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.extend_from_slice(&0i32.to_be_bytes());
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.extend_from_slice(&0i64.to_be_bytes());
        b.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            StoredGroup::decode(&b),
            Err(StoreError::Corrupt(_))
        ));
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = StoredGroup::decode(&bytes);
            let _ = decode_offsets(&bytes);
        }

        #[test]
        fn random_bytes_after_a_valid_version_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut b = vec![1u8];
            b.extend_from_slice(&bytes);
            let _ = StoredGroup::decode(&b);
            let _ = decode_offsets(&b);
        }

        #[test]
        fn mutated_records_never_panic(pos in 0usize..200, val in any::<u8>()) {
            let mut b = sample_group().encode().to_vec();
            let i = pos % b.len();
            b[i] = val;
            if let Ok(g) = StoredGroup::decode(&b) {
                // Whatever decodes must encode back to the same bytes.
                prop_assert_eq!(g.encode().to_vec(), b);
            }
        }

        #[test]
        fn arbitrary_groups_round_trip(
            gen in any::<i32>(),
            ts in any::<i64>(),
            pt in proptest::option::of(".{0,12}"),
            leader in proptest::option::of(".{0,12}"),
            members in proptest::collection::vec((".{0,10}", proptest::option::of(".{0,6}"), any::<i32>(),
                proptest::collection::vec(any::<u8>(), 0..40)), 0..6),
        ) {
            let g = StoredGroup {
                protocol_type: pt.clone(),
                protocol_name: pt,
                generation: gen,
                leader,
                state_timestamp_ms: ts,
                members: members.into_iter().map(|(id, inst, t, blob)| StoredMember {
                    member_id: id.clone(),
                    group_instance_id: inst,
                    client_id: id.clone(),
                    client_host: id,
                    rebalance_timeout_ms: t,
                    session_timeout_ms: t.wrapping_add(1),
                    subscription: Bytes::from(blob.clone()),
                    assignment: Bytes::from(blob),
                }).collect(),
            };
            prop_assert_eq!(StoredGroup::decode(&g.encode()).ok(), Some(g));
        }
    }
}
