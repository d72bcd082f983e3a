//! Taking a group over from the gateway (passthrough → local). Before kelp's coordinator answers
//! the first request of a group, in each process and again after every period in passthrough,
//! kelp reads the offsets the gateway committed for it (`Store::import_gateway_offsets`, read-only)
//! and commits into its own coordinator every one that is higher than kelp's own, so consumers
//! resume where they were and no committed offset goes backwards, even when kelp still holds
//! offsets from an earlier local period. The commit is a "simple" one (no generation): kelp's
//! coordinator takes it only while the group has no members there; a group with members was being
//! served by kelp, so its offsets are kelp's already.
//!
//! Requests of the group that arrive meanwhile wait in arrival order and are handed to the
//! coordinator in that order once the import is done. If the import fails (filer unreachable),
//! their connections are closed (clients reconnect and retry) and the next request tries again.
//! Without a store, or without a config file, there is nothing to do.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{GroupId, OffsetCommitRequest, OffsetFetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::oneshot;

use crate::coordinator::GroupService;
use crate::group::{Request, Response};
use crate::protocol::LocalReply;
use crate::protocol::Peek;
use crate::store::{Store, TopicPartitionOffsets};

/// Longest a take-over may take (filer read and kelp's commit).
const LIMIT: Duration = Duration::from_secs(15);
/// Groups remembered as taken over at most; beyond it the set starts again (a repeated take-over
/// costs one filer read and changes nothing).
const MAX_DONE: usize = 1_000_000;

/// A request waiting for its group's take-over.
struct Waiting {
    peek: Peek,
    client_id: String,
    client_host: String,
    request: Request,
    reply: oneshot::Sender<LocalReply>,
}

enum State {
    Running(Vec<Waiting>),
    Done,
}

/// Take-overs done and running.
pub struct TakeOvers {
    store: Option<Arc<dyn Store>>,
    /// Whether kelp runs with a config file (groups can change mode).
    enabled: bool,
    groups: Mutex<HashMap<String, State>>,
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

impl TakeOvers {
    pub fn new(store: Option<Arc<dyn Store>>, enabled: bool) -> TakeOvers {
        TakeOvers {
            store,
            enabled,
            groups: Mutex::new(HashMap::new()),
        }
    }

    /// After a reload: groups now passed through are taken over again when they come back.
    pub fn retain(&self, local: impl Fn(&str) -> bool) {
        if let Ok(mut groups) = self.groups.lock() {
            groups.retain(|g, state| local(g) || matches!(state, State::Running(_)));
        }
    }

    /// Hands a local group's request to the coordinator now, or after the group's take-over
    /// (started here if it is the group's first request).
    pub fn submit(
        self: &Arc<Self>,
        groups: &GroupService,
        group: Option<&str>,
        peek: &Peek,
        client_id: String,
        client_host: &str,
        request: Request,
    ) -> LocalReply {
        let (Some(group), Some(store), true) = (group, &self.store, self.enabled) else {
            return groups.submit_decoded(peek, client_id, client_host, request);
        };
        let Ok(mut taken) = self.groups.lock() else {
            return groups.submit_decoded(peek, client_id, client_host, request);
        };
        if let Some(State::Done) = taken.get(group) {
            return groups.submit_decoded(peek, client_id, client_host, request);
        }
        let (tx, rx) = oneshot::channel();
        let waiting = Waiting {
            peek: *peek,
            client_id,
            client_host: client_host.to_string(),
            request,
            reply: tx,
        };
        match taken.get_mut(group) {
            Some(State::Running(queue)) => queue.push(waiting),
            _ => {
                if taken.len() >= MAX_DONE {
                    taken.retain(|_, state| matches!(state, State::Running(_)));
                }
                taken.insert(group.to_string(), State::Running(vec![waiting]));
                let (this, groups, store, group) = (
                    self.clone(),
                    groups.clone(),
                    store.clone(),
                    group.to_string(),
                );
                tokio::spawn(async move {
                    let ok = match tokio::time::timeout(LIMIT, import(&groups, &*store, &group))
                        .await
                    {
                        Ok(Ok(())) => true,
                        Ok(Err(e)) => {
                            tracing::error!(group, "taking the group over from the gateway failed; its requests are refused until it works: {e}");
                            false
                        }
                        Err(_) => {
                            tracing::error!(group, "taking the group over from the gateway took over {LIMIT:?}; retrying on its next request");
                            false
                        }
                    };
                    this.finish(&groups, &group, ok);
                });
            }
        }
        Box::pin(async move {
            let reply = rx.await.ok()?;
            reply.await
        })
    }

    /// Ends a take-over: hands the waiting requests to the coordinator in arrival order, or (it
    /// failed) drops them, which closes their connections.
    fn finish(&self, groups: &GroupService, group: &str, ok: bool) {
        let Ok(mut taken) = self.groups.lock() else {
            return;
        };
        let queue = match taken.remove(group) {
            Some(State::Running(queue)) => queue,
            _ => Vec::new(),
        };
        if ok {
            taken.insert(group.to_string(), State::Done);
            for w in queue {
                let reply = groups.submit_decoded(&w.peek, w.client_id, &w.client_host, w.request);
                let _ = w.reply.send(reply);
            }
        }
        // Not ok: dropping the senders answers `None`, and those connections close.
    }
}

/// COORDINATOR_LOAD_IN_PROGRESS: kelp's coordinator is still loading its groups from the store.
const LOADING: i16 = 14;

/// `import`, again while kelp's coordinator is still loading (bounded by the caller's timeout).
async fn import(groups: &GroupService, store: &dyn Store, group: &str) -> Result<(), String> {
    loop {
        match import_once(groups, store, group).await {
            Err(Retry::Loading) => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(Retry::No(e)) => return Err(e),
            Ok(()) => return Ok(()),
        }
    }
}

enum Retry {
    Loading,
    No(String),
}

impl From<String> for Retry {
    fn from(e: String) -> Retry {
        Retry::No(e)
    }
}

/// Commits into kelp's coordinator the gateway's offsets of `group` that are higher than kelp's.
async fn import_once(groups: &GroupService, store: &dyn Store, group: &str) -> Result<(), Retry> {
    let theirs: TopicPartitionOffsets = store
        .import_gateway_offsets(group)
        .await
        .map_err(|e| e.to_string())?;
    if theirs.is_empty() {
        tracing::info!(
            group,
            "group taken over from the gateway: it holds no offsets for it"
        );
        return Ok(());
    }
    let mut by_topic: HashMap<&str, Vec<i32>> = HashMap::new();
    for (topic, partition, _) in &theirs {
        by_topic.entry(topic.as_str()).or_default().push(*partition);
    }
    let fetch = OffsetFetchRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_topics(Some(
            by_topic
                .iter()
                .map(|(t, ps)| {
                    OffsetFetchRequestTopic::default()
                        .with_name(TopicName(s(t)))
                        .with_partition_indexes(ps.clone())
                })
                .collect(),
        ));
    let ours = match groups
        .send_decoded(5, "kelp".into(), "/kelp", Request::OffsetFetch(fetch))
        .await
    {
        Some(Response::OffsetFetch(r)) if r.error_code == 0 => r,
        Some(Response::OffsetFetch(r)) if r.error_code == LOADING => return Err(Retry::Loading),
        Some(Response::OffsetFetch(r)) => {
            return Err(format!("kelp's OffsetFetch answered error {}", r.error_code).into())
        }
        _ => return Err(Retry::No("kelp's coordinator did not answer".into())),
    };
    let held = |topic: &str, partition: i32| {
        ours.topics
            .iter()
            .filter(|t| t.name.as_str() == topic)
            .flat_map(|t| &t.partitions)
            .find(|p| p.partition_index == partition && p.error_code == 0)
            .map_or(-1, |p| p.committed_offset)
    };
    let mut topics: HashMap<&str, Vec<OffsetCommitRequestPartition>> = HashMap::new();
    for (topic, partition, offset) in &theirs {
        if offset.offset > held(topic, *partition) {
            topics.entry(topic.as_str()).or_default().push(
                OffsetCommitRequestPartition::default()
                    .with_partition_index(*partition)
                    .with_committed_offset(offset.offset)
                    .with_committed_metadata(Some(s(&offset.metadata))),
            );
        }
    }
    let newer: usize = topics.values().map(Vec::len).sum();
    if newer == 0 {
        tracing::info!(
            group,
            gateway = theirs.len(),
            "group taken over from the gateway: kelp already holds offsets at least as high"
        );
        return Ok(());
    }
    let commit = OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(s(""))
        .with_topics(
            topics
                .into_iter()
                .map(|(t, ps)| {
                    OffsetCommitRequestTopic::default()
                        .with_name(TopicName(s(t)))
                        .with_partitions(ps)
                })
                .collect(),
        );
    let Some(Response::OffsetCommit(r)) = groups
        .send_decoded(5, "kelp".into(), "/kelp", Request::OffsetCommit(commit))
        .await
    else {
        return Err(Retry::No(
            "kelp's coordinator did not answer the import commit".into(),
        ));
    };
    let error = r
        .topics
        .iter()
        .flat_map(|t| &t.partitions)
        .map(|p| p.error_code)
        .find(|c| *c != 0)
        .unwrap_or(0);
    match error {
        0 => {
            tracing::info!(
                group,
                imported = newer,
                "group taken over from the gateway: its higher offsets are kelp's now"
            );
            Ok(())
        }
        // The group has members at kelp: kelp was serving it, and its offsets are current.
        22 | 25 | 27 => {
            tracing::info!(group, "group has members at kelp; kelp's offsets kept");
            Ok(())
        }
        LOADING => Err(Retry::Loading),
        e => Err(format!("kelp's coordinator refused the imported offsets (error {e})").into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::store::{CommittedOffset, MemoryStore};
    use kafka_protocol::messages::{ApiKey, OffsetFetchResponse};
    use kafka_protocol::protocol::Decodable;

    fn offset(o: i64) -> CommittedOffset {
        CommittedOffset {
            offset: o,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp_ms: 0,
            expire_timestamp_ms: None,
        }
    }

    fn peek(api_key: ApiKey, api_version: i16) -> Peek {
        Peek {
            api_key,
            api_version,
            correlation_id: 7,
        }
    }

    fn fetch(group: &str) -> Request {
        Request::OffsetFetch(
            OffsetFetchRequest::default()
                .with_group_id(GroupId(s(group)))
                .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                    .with_name(TopicName(s("t")))
                    .with_partition_indexes(vec![0, 1])])),
        )
    }

    fn commit(group: &str, partition: i32, offset: i64) -> Request {
        Request::OffsetCommit(
            OffsetCommitRequest::default()
                .with_group_id(GroupId(s(group)))
                .with_generation_id_or_member_epoch(-1)
                .with_member_id(s(""))
                .with_topics(vec![OffsetCommitRequestTopic::default()
                    .with_name(TopicName(s("t")))
                    .with_partitions(vec![OffsetCommitRequestPartition::default()
                        .with_partition_index(partition)
                        .with_committed_offset(offset)])]),
        )
    }

    async fn offsets(reply: LocalReply) -> Vec<i64> {
        let frame = reply.await.expect("an answer");
        let (_, mut body) =
            crate::protocol::split_response(frame.slice(4..), ApiKey::OffsetFetch, 5).unwrap();
        let r = OffsetFetchResponse::decode(&mut body, 5).unwrap();
        r.topics[0]
            .partitions
            .iter()
            .map(|p| p.committed_offset)
            .collect()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_gateways_higher_offsets_are_imported_before_the_first_answer() {
        let groups = GroupService::spawn(crate::group::Config::default(), Arc::new(Metrics::new()));
        let store = Arc::new(MemoryStore::new());
        store.set_gateway_offsets(
            "g",
            vec![("t".into(), 0, offset(100)), ("t".into(), 1, offset(5))],
        );
        let t = Arc::new(TakeOvers::new(Some(store.clone()), true));
        // kelp holds an older offset for partition 0 and a newer one for partition 1 (an earlier
        // local period): each partition keeps the higher.
        let old = groups.submit_decoded(
            &peek(ApiKey::OffsetCommit, 5),
            "c".into(),
            "/h",
            commit("g", 0, 40),
        );
        assert!(old.await.is_some());
        let newer = groups.submit_decoded(
            &peek(ApiKey::OffsetCommit, 5),
            "c".into(),
            "/h",
            commit("g", 1, 9),
        );
        assert!(newer.await.is_some());
        let first = t.submit(
            &groups,
            Some("g"),
            &peek(ApiKey::OffsetFetch, 5),
            "c".into(),
            "/h",
            fetch("g"),
        );
        let second = t.submit(
            &groups,
            Some("g"),
            &peek(ApiKey::OffsetFetch, 5),
            "c".into(),
            "/h",
            fetch("g"),
        );
        assert_eq!(offsets(first).await, [100, 9]);
        assert_eq!(offsets(second).await, [100, 9]);
        // Once taken over, the gateway is not read again until the group leaves and comes back.
        store.set_gateway_offsets("g", vec![("t".into(), 0, offset(500))]);
        let again = t.submit(
            &groups,
            Some("g"),
            &peek(ApiKey::OffsetFetch, 5),
            "c".into(),
            "/h",
            fetch("g"),
        );
        assert_eq!(offsets(again).await, [100, 9]);
        t.retain(|_| false);
        let back = t.submit(
            &groups,
            Some("g"),
            &peek(ApiKey::OffsetFetch, 5),
            "c".into(),
            "/h",
            fetch("g"),
        );
        assert_eq!(offsets(back).await, [500, 9]);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_failed_import_refuses_the_waiting_requests_and_is_tried_again() {
        let groups = GroupService::spawn(crate::group::Config::default(), Arc::new(Metrics::new()));
        let store = Arc::new(MemoryStore::new());
        store.set_gateway_offsets("g", vec![("t".into(), 0, offset(7))]);
        store.set_available(false);
        let t = Arc::new(TakeOvers::new(Some(store.clone()), true));
        let refused = t.submit(
            &groups,
            Some("g"),
            &peek(ApiKey::OffsetFetch, 5),
            "c".into(),
            "/h",
            fetch("g"),
        );
        assert!(refused.await.is_none(), "the connection is closed");
        store.set_available(true);
        let ok = t.submit(
            &groups,
            Some("g"),
            &peek(ApiKey::OffsetFetch, 5),
            "c".into(),
            "/h",
            fetch("g"),
        );
        assert_eq!(offsets(ok).await, [7, -1]);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn without_a_config_file_nothing_is_imported() {
        let groups = GroupService::spawn(crate::group::Config::default(), Arc::new(Metrics::new()));
        let store = Arc::new(MemoryStore::new());
        store.set_gateway_offsets("g", vec![("t".into(), 0, offset(7))]);
        let t = Arc::new(TakeOvers::new(Some(store), false));
        let r = t.submit(
            &groups,
            Some("g"),
            &peek(ApiKey::OffsetFetch, 5),
            "c".into(),
            "/h",
            fetch("g"),
        );
        assert_eq!(offsets(r).await, [-1, -1]);
    }
}
