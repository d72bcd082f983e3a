//! Read-only import of the offsets the SeaweedFS Kafka gateway committed itself, for a group that
//! moves from `passthrough` to `local`. Never writes there (BACKEND.md: the gateway caches its
//! offsets and does not read back what others write).
//!
//! Where (verified against 4.48 with a real kafka-python consumer committing through the real
//! gateway): `<root>/<group>/<topic>/<partition>/offset`, root `/topics/kafka/.meta/consumer_offsets`,
//! each file `{"type":"offset","value":714,"committed_at":<unix ms>,"metadata":""}`. The gateway
//! puts the raw group id in the path, so a `/` in it nests directories (`g/x` is `<root>/g/x/...`).
//! It keeps no leader epoch (imported as -1) and no expiry.

use futures::stream::{self, StreamExt, TryStreamExt};
use serde_json::Value;

use super::escape::url_encode;
use super::filer_http::FilerHttp;
use super::{CommittedOffset, StoreError, TopicPartitionOffsets};

/// Parallel GETs of one topic's partition files.
const CONCURRENCY: usize = 16;

/// Every offset the gateway holds for `group`, sorted by topic then partition; empty when none.
/// `root` is the URL-encoded root directory.
pub(crate) async fn import_offsets(
    http: &FilerHttp,
    root: &str,
    group: &str,
) -> Result<TopicPartitionOffsets, StoreError> {
    // Ids the filer would resolve to another directory cannot name this group's records.
    if group
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Ok(Vec::new());
    }
    let gdir = format!("{root}/{}", url_encode(group, true));
    let Some(topics) = http.list(&gdir).await? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for topic in topics.into_iter().filter(|e| e.is_dir) {
        let tdir = format!("{gdir}/{}", url_encode(&topic.name, false));
        let Some(partitions) = http.list(&tdir).await? else {
            continue;
        };
        let numbered = partitions
            .into_iter()
            .filter(|e| e.is_dir)
            .filter_map(|e| e.name.parse::<i32>().ok());
        let found: Vec<Option<(i32, CommittedOffset)>> = stream::iter(numbered)
            .map(|p| {
                let path = format!("{tdir}/{p}/offset");
                async move {
                    let Some(body) = http.get(&path).await? else {
                        return Ok(None);
                    };
                    Ok::<_, StoreError>(parse_offset(&body, &path)?.map(|o| (p, o)))
                }
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await?;
        out.extend(
            found
                .into_iter()
                .flatten()
                .map(|(p, o)| (topic.name.clone(), p, o)),
        );
    }
    out.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    Ok(out)
}

/// One offset file. `None` for a record that is not an offset or holds no position (negative).
pub(crate) fn parse_offset(body: &[u8], path: &str) -> Result<Option<CommittedOffset>, StoreError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| StoreError::Corrupt(format!("gateway offset {path} is not JSON: {e}")))?;
    if v.get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| t != "offset")
    {
        return Ok(None);
    }
    let Some(offset) = v.get("value").and_then(Value::as_i64) else {
        return Err(StoreError::Corrupt(format!(
            "gateway offset {path} has no integer \"value\""
        )));
    };
    if offset < 0 {
        return Ok(None);
    }
    Ok(Some(CommittedOffset {
        offset,
        leader_epoch: -1,
        metadata: v
            .get("metadata")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        commit_timestamp_ms: v.get("committed_at").and_then(Value::as_i64).unwrap_or(0),
        expire_timestamp_ms: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_offset_records() {
        let got = parse_offset(
            br#"{"type":"offset","value":714,"committed_at":1795628743678,"metadata":"m"}"#,
            "p",
        )
        .expect("parses")
        .expect("an offset");
        assert_eq!(
            got,
            CommittedOffset {
                offset: 714,
                leader_epoch: -1,
                metadata: "m".into(),
                commit_timestamp_ms: 1_795_628_743_678,
                expire_timestamp_ms: None
            }
        );
        assert_eq!(
            parse_offset(br#"{"type":"other","value":1}"#, "p"),
            Ok(None)
        );
        assert_eq!(
            parse_offset(br#"{"type":"offset","value":-1}"#, "p"),
            Ok(None)
        );
        for bad in [
            &b"nope"[..],
            br#"{"type":"offset"}"#,
            br#"{"value":"7"}"#,
            b"",
            b"[1]",
        ] {
            assert!(matches!(
                parse_offset(bad, "p"),
                Err(StoreError::Corrupt(_))
            ));
        }
    }
}
