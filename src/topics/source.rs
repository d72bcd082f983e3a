//! Where a topic's incarnation comes from: with `--filer`, the SeaweedFS filer the gateway keeps
//! its topics in (`/topics/kafka/<topic>/`, BACKEND.md): the directory listing tells which topic
//! entries changed, and `topic.conf` gives the creation time (Unix ns) of the topic's partitions,
//! which a deleted and recreated topic gets anew. Reads only: kelp never writes under `/topics`.

use serde_json::Value;

use super::id::Incarnation;
use crate::store::escape::url_encode;
use crate::store::filer_http::FilerHttp;
use crate::store::StoreError;

/// The gateway's topics directory in the filer (SeaweedFS MQ namespace `kafka`).
pub const TOPICS_DIR: &str = "/topics/kafka";

/// The filer's view of the topics.
pub struct FilerTopics {
    http: FilerHttp,
}

impl FilerTopics {
    pub(crate) fn new(http: FilerHttp) -> FilerTopics {
        FilerTopics { http }
    }

    /// Every topic directory with its listing stamp (creation and modification times); entries
    /// starting with `.` (the gateway's `.meta`) are not topics.
    pub async fn list(&self) -> Result<Vec<(String, String)>, StoreError> {
        let entries = self.http.list(TOPICS_DIR).await?.unwrap_or_default();
        Ok(entries
            .into_iter()
            .filter(|e| e.is_dir && !e.name.starts_with('.'))
            .map(|e| (e.name, e.stamp))
            .collect())
    }

    /// The incarnation of `topic`: its partitions' creation time from `topic.conf`, or
    /// `Unknown` when there is no such file or it names no partition.
    pub async fn incarnation(&self, topic: &str) -> Result<Incarnation, StoreError> {
        let path = format!("{TOPICS_DIR}/{}/topic.conf", url_encode(topic, false));
        match self.http.get(&path).await? {
            None => Ok(Incarnation::Unknown),
            Some(body) => Ok(created(&body).map_or(Incarnation::Unknown, Incarnation::Created)),
        }
    }
}

/// The earliest `unixTimeNs` of the partitions `topic.conf` assigns (SeaweedFS 4.48 writes
/// `{"brokerPartitionAssignments":[{"partition":{"ringSize":2520,"rangeStart":0,"rangeStop":2520,
/// "unixTimeNs":"1796314039600245361"},"leaderBroker":"…"}],…}`, the number as a JSON string).
/// `None` when the file is not that shape. The earliest, so a later partition change that keeps
/// the first partitions keeps the id.
pub fn created(topic_conf: &[u8]) -> Option<i64> {
    let v: Value = serde_json::from_slice(topic_conf).ok()?;
    v.get("brokerPartitionAssignments")?
        .as_array()?
        .iter()
        .filter_map(|a| {
            let t = a.get("partition")?.get("unixTimeNs")?;
            t.as_i64().or_else(|| t.as_str()?.parse().ok())
        })
        .filter(|ns| *ns > 0)
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_partitions_creation_time_of_a_real_4_48_topic_conf() {
        let conf = br#"{
  "brokerPartitionAssignments":  [
    {"partition":  {"ringSize":  2520, "rangeStart":  0, "rangeStop":  1260,
      "unixTimeNs":  "1796314116226572037"}, "leaderBroker":  "127.0.0.1:12889", "followerBroker":  ""},
    {"partition":  {"ringSize":  2520, "rangeStart":  1260, "rangeStop":  2520,
      "unixTimeNs":  "1796314116226572036"}, "leaderBroker":  "127.0.0.1:12889", "followerBroker":  ""}
  ],
  "retention":  null, "messageRecordType":  null, "keyColumns":  [], "schemaFormat":  ""
}"#;
        assert_eq!(created(conf), Some(1_796_314_116_226_572_036));
        assert_eq!(
            created(br#"{"brokerPartitionAssignments":[{"partition":{"unixTimeNs":7}}]}"#),
            Some(7)
        );
    }

    #[test]
    fn other_shapes_have_no_creation_time() {
        for body in [
            &b""[..],
            b"nope",
            b"{}",
            br#"{"brokerPartitionAssignments":[]}"#,
            br#"{"brokerPartitionAssignments":[{"partition":{"unixTimeNs":"x"}}]}"#,
            br#"{"brokerPartitionAssignments":[{"partition":{"unixTimeNs":0}}]}"#,
        ] {
            assert_eq!(created(body), None, "{}", String::from_utf8_lossy(body));
        }
    }
}
