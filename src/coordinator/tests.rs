//! Shell tests with the in-memory store (`MemoryStore`): commits acknowledged only once stored,
//! a store outage answered COORDINATOR_NOT_AVAILABLE then recovered, a restart that loads what
//! was stored (answering 14, Heartbeat 0, while the store cannot be read), and the import.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::GroupService;
use crate::group::{self, Request, Response};
use crate::lease::{Leases, Window};
use crate::metrics::Metrics;
use crate::store::{self, MemoryStore, Store, StoredGroup};

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn service(store: &Arc<MemoryStore>) -> GroupService {
    let config = group::Config {
        initial_rebalance_delay_ms: 0,
        ..group::Config::default()
    };
    let store: Arc<dyn Store> = store.clone();
    GroupService::spawn_with_store(config, Arc::new(Metrics::new()), Some(store))
}

async fn call(svc: &GroupService, version: i16, request: Request) -> Response {
    let response = svc.call(version, "c", "/127.0.0.1", request);
    tokio::time::timeout(Duration::from_secs(10), response)
        .await
        .expect("answered within 10 s")
        .expect("the actor runs")
}

/// A simple (generation -1) commit of one offset: the partition's error code.
async fn commit(svc: &GroupService, group: &str, partition: i32, offset: i64) -> i16 {
    let mut r = OffsetCommitRequest::default();
    r.group_id = s(group).into();
    r.generation_id_or_member_epoch = -1;
    let mut t = OffsetCommitRequestTopic::default();
    t.name = s("t").into();
    let mut p = OffsetCommitRequestPartition::default();
    p.partition_index = partition;
    p.committed_offset = offset;
    t.partitions = vec![p];
    r.topics = vec![t];
    match call(svc, 8, Request::OffsetCommit(r)).await {
        Response::OffsetCommit(r) => r.topics[0].partitions[0].error_code,
        other => panic!("{other:?}"),
    }
}

/// OffsetFetch v7 of one partition: (top-level error, offset).
async fn fetch(svc: &GroupService, group: &str, partition: i32) -> (i16, i64) {
    let mut r = OffsetFetchRequest::default();
    r.group_id = s(group).into();
    let mut t = OffsetFetchRequestTopic::default();
    t.name = s("t").into();
    t.partition_indexes = vec![partition];
    r.topics = Some(vec![t]);
    match call(svc, 7, Request::OffsetFetch(r)).await {
        Response::OffsetFetch(r) if r.error_code != 0 => (r.error_code, -1),
        Response::OffsetFetch(r) => (0, r.topics[0].partitions[0].committed_offset),
        other => panic!("{other:?}"),
    }
}

async fn heartbeat(svc: &GroupService, group: &str, member: &str, generation: i32) -> i16 {
    let mut r = HeartbeatRequest::default();
    r.group_id = s(group).into();
    r.member_id = s(member);
    r.generation_id = generation;
    match call(svc, 4, Request::Heartbeat(r)).await {
        Response::Heartbeat(r) => r.error_code,
        other => panic!("{other:?}"),
    }
}

/// Fetches until kelp has loaded (no more 14), bounded.
async fn fetch_after_load(svc: &GroupService, group: &str, partition: i32) -> i64 {
    let start = Instant::now();
    loop {
        match fetch(svc, group, partition).await {
            (14, _) if start.elapsed() < Duration::from_secs(10) => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            (0, offset) => return offset,
            other => panic!("fetch after load: {other:?}"),
        }
    }
}

fn off(offset: i64) -> store::CommittedOffset {
    store::CommittedOffset {
        offset,
        leader_epoch: -1,
        metadata: String::new(),
        commit_timestamp_ms: 1,
        expire_timestamp_ms: None,
    }
}

#[tokio::test]
async fn acknowledged_commits_are_in_the_store_and_a_new_kelp_loads_them() {
    let store = Arc::new(MemoryStore::new());
    let svc = service(&store);
    assert_eq!(fetch_after_load(&svc, "g", 0).await, -1);
    assert_eq!(commit(&svc, "g", 0, 41).await, 0);
    assert_eq!(commit(&svc, "g", 0, 42).await, 0);
    let stored = store.load_offsets("g").await.expect("load");
    assert_eq!(stored[0].2.offset, 42, "acknowledged means stored");
    drop(svc);
    let again = service(&store);
    assert_eq!(fetch_after_load(&again, "g", 0).await, 42);
}

#[tokio::test]
async fn store_outage_answers_15_and_nothing_acknowledged_is_lost() {
    let store = Arc::new(MemoryStore::new());
    let svc = service(&store);
    fetch_after_load(&svc, "g", 0).await;
    assert_eq!(commit(&svc, "g", 0, 10).await, 0);
    store.set_available(false);
    assert_eq!(commit(&svc, "g", 0, 11).await, 15);
    assert_eq!(commit(&svc, "g", 1, 5).await, 15);
    assert_eq!(
        fetch(&svc, "g", 0).await,
        (0, 10),
        "the failed commit is not visible"
    );
    store.set_available(true);
    assert_eq!(commit(&svc, "g", 0, 12).await, 0);
    assert_eq!(fetch(&svc, "g", 0).await, (0, 12));
    drop(svc);
    let again = service(&store);
    assert_eq!(fetch_after_load(&again, "g", 0).await, 12);
    assert_eq!(fetch(&again, "g", 1).await, (0, -1));
}

#[tokio::test]
async fn while_the_store_cannot_be_read_kelp_answers_14_and_heartbeat_0_then_loads() {
    let store = Arc::new(MemoryStore::new());
    store
        .put_offsets("g", vec![("t".into(), 0, off(7))])
        .await
        .expect("put");
    store.set_available(false);
    let svc = service(&store);
    assert_eq!(fetch(&svc, "g", 0).await, (14, -1));
    assert_eq!(commit(&svc, "g", 0, 8).await, 14);
    assert_eq!(heartbeat(&svc, "g", "m", 1).await, 0);
    store.set_available(true);
    assert_eq!(fetch_after_load(&svc, "g", 0).await, 7);
    assert_eq!(heartbeat(&svc, "g", "m", 1).await, 25);
}

#[tokio::test]
async fn a_stable_group_is_stored_and_comes_back_with_its_generation() {
    let store = Arc::new(MemoryStore::new());
    let svc = service(&store);
    fetch_after_load(&svc, "other", 0).await;
    let mut join = JoinGroupRequest::default();
    join.group_id = s("g").into();
    join.session_timeout_ms = 30_000;
    join.rebalance_timeout_ms = 30_000;
    join.protocol_type = s("consumer");
    let mut p = JoinGroupRequestProtocol::default();
    p.name = s("range");
    p.metadata = Bytes::from_static(b"meta");
    join.protocols = vec![p];
    let Response::JoinGroup(j) = call(&svc, 3, Request::JoinGroup(join)).await else {
        panic!("join")
    };
    assert_eq!((j.error_code, j.generation_id), (0, 1));
    let mut sync = SyncGroupRequest::default();
    sync.group_id = s("g").into();
    sync.member_id = j.member_id.clone();
    sync.generation_id = 1;
    let mut a = SyncGroupRequestAssignment::default();
    a.member_id = j.member_id.clone();
    a.assignment = Bytes::from_static(b"A1");
    sync.assignments = vec![a];
    let Response::SyncGroup(r) = call(&svc, 3, Request::SyncGroup(sync)).await else {
        panic!("sync")
    };
    assert_eq!((r.error_code, r.assignment.as_ref()), (0, &b"A1"[..]));
    let record = store
        .load_group("g")
        .await
        .expect("load")
        .expect("a record");
    let record = StoredGroup::decode(&record).expect("decodes");
    assert_eq!((record.generation, record.members.len()), (1, 1));
    assert_eq!(record.members[0].assignment.as_ref(), b"A1");
    drop(svc);
    let again = service(&store);
    fetch_after_load(&again, "other", 0).await;
    assert_eq!(heartbeat(&again, "g", &j.member_id, 1).await, 0);
}

#[tokio::test]
async fn gateway_offsets_are_imported_once_and_kept_in_kelps_store() {
    let store = Arc::new(MemoryStore::new());
    store.set_gateway_offsets("g", vec![("t".into(), 0, off(5)), ("t".into(), 1, off(9))]);
    let svc = service(&store);
    assert_eq!(fetch_after_load(&svc, "g", 1).await, 9);
    let kept = store.load_offsets("g").await.expect("load");
    assert_eq!(kept.len(), 2);
    store.set_gateway_offsets("g", vec![("t".into(), 0, off(100))]);
    assert_eq!(fetch(&svc, "g", 0).await, (0, 5), "imported once");
    store.set_available(false);
    assert_eq!(
        fetch(&svc, "new", 0).await,
        (15, -1),
        "a failed import is retriable"
    );
}

/// A fenced coordinator in a mesh of one holding every lease for good.
fn sharded(store: &Arc<MemoryStore>) -> GroupService {
    fenced(
        store,
        Arc::new(Leases::granted(32)),
        Duration::from_secs(10),
    )
    .0
}

/// A fenced coordinator in a mesh of one under `leases`; calls wait at most `wait` for them.
fn fenced(
    store: &Arc<MemoryStore>,
    leases: Arc<Leases>,
    wait: Duration,
) -> (GroupService, Arc<Metrics>) {
    let config = group::Config {
        initial_rebalance_delay_ms: 0,
        ..group::Config::default()
    };
    let store: Arc<dyn Store> = store.clone();
    let peers = crate::peers::Peers::new("127.0.0.1:1".into(), Duration::from_millis(50));
    let metrics = Arc::new(Metrics::new());
    let svc = GroupService::spawn_sharded(config, metrics.clone(), store, peers, leases, wait);
    (svc, metrics)
}

/// `group`'s bucket held in `term` from now for `for_ms` (0: not held).
fn hold(leases: &Leases, group: &str, term: u64, for_ms: u64) {
    let now = Instant::now();
    let window = Window {
        term,
        from: (for_ms > 0).then_some(now),
        until: (for_ms > 0).then(|| now + Duration::from_millis(for_ms)),
    };
    leases.publish(vec![(leases.bucket_of(group), window)]);
}

#[tokio::test]
async fn a_sharded_coordinator_adopts_a_group_from_the_store_on_its_first_request() {
    let store = Arc::new(MemoryStore::new());
    let before = service(&store);
    // The unsharded service loads the store at startup: wait for that before committing.
    assert_eq!(fetch_after_load(&before, "g", 0).await, -1);
    assert_eq!(commit(&before, "g", 0, 7).await, 0);
    drop(before);
    // Nothing is loaded at startup: the group comes from the store when it is asked for.
    let svc = sharded(&store);
    assert_eq!(fetch(&svc, "g", 0).await, (0, 7));
    assert_eq!(commit(&svc, "g", 0, 8).await, 0);
    assert_eq!(fetch(&svc, "g", 0).await, (0, 8));
    // A group the store does not know starts empty.
    assert_eq!(fetch(&svc, "new", 0).await, (0, -1));
}

#[tokio::test]
async fn a_sharded_load_is_retried_while_the_store_cannot_be_read() {
    let store = Arc::new(MemoryStore::new());
    let before = service(&store);
    // The unsharded service loads the store at startup: wait for that before committing.
    assert_eq!(fetch_after_load(&before, "g", 0).await, -1);
    assert_eq!(commit(&before, "g", 0, 7).await, 0);
    drop(before);
    store.set_available(false);
    let svc = sharded(&store);
    let back = store.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        back.set_available(true);
    });
    let started = Instant::now();
    // Held while the load is retried, then answered from the store: no error reaches the client.
    assert_eq!(fetch(&svc, "g", 0).await, (0, 7));
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "answered before the store came back"
    );
}

#[tokio::test]
async fn a_sharded_load_that_keeps_failing_is_refused_coordinator_not_available() {
    let store = Arc::new(MemoryStore::new());
    store.set_available(false);
    let svc = sharded(&store);
    // After ~3 s of retries the waiting call is refused (retriable: clients ask again).
    assert_eq!(fetch(&svc, "g", 0).await.0, 15);
}

#[tokio::test]
async fn a_group_whose_lease_this_kelp_does_not_hold_is_never_served() {
    let store = Arc::new(MemoryStore::new());
    let leases = Arc::new(Leases::new(32));
    let (svc, _) = fenced(&store, leases, Duration::from_millis(300));
    // Preferred (a mesh of one) but not held: the call waits for the lease, then gets 15.
    let started = Instant::now();
    assert_eq!(commit(&svc, "g", 0, 7).await, 15);
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert_eq!(store.writes(), 0, "nothing written without the lease");
}

#[tokio::test]
async fn a_call_waiting_for_its_lease_runs_once_the_lease_comes() {
    let store = Arc::new(MemoryStore::new());
    let leases = Arc::new(Leases::new(32));
    let (svc, _) = fenced(&store, leases.clone(), Duration::from_secs(5));
    let later = leases.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        hold(&later, "g", 1, 60_000);
    });
    let started = Instant::now();
    assert_eq!(commit(&svc, "g", 0, 7).await, 0);
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "answered before the lease"
    );
    assert_eq!(store.epoch_of("g"), 1, "claimed once in the store");
}

#[tokio::test]
async fn a_lease_that_ends_releases_its_groups_and_a_new_term_claims_them_again() {
    let store = Arc::new(MemoryStore::new());
    let leases = Arc::new(Leases::new(32));
    hold(&leases, "g", 1, 60_000);
    let (svc, metrics) = fenced(&store, leases.clone(), Duration::from_millis(300));
    assert_eq!(commit(&svc, "g", 0, 7).await, 0);
    // The lease ends: the group is released at once and its calls are no longer served.
    hold(&leases, "g", 1, 0);
    assert_eq!(fetch(&svc, "g", 0).await.0, 15);
    assert_eq!(
        metrics.ownership_moves.with_label_values(&["out"]).get(),
        1,
        "released"
    );
    // Another term: claimed and loaded again from the store.
    hold(&leases, "g", 2, 60_000);
    assert_eq!(fetch(&svc, "g", 0).await, (0, 7));
    assert_eq!(store.epoch_of("g"), 2);
    assert_eq!(metrics.lease.unleased_serving.get(), 0.0);
}

#[tokio::test]
async fn a_lease_running_out_releases_its_groups_before_the_deadline() {
    let store = Arc::new(MemoryStore::new());
    let leases = Arc::new(Leases::new(32));
    hold(&leases, "g", 1, 400);
    let (svc, metrics) = fenced(&store, leases.clone(), Duration::from_millis(100));
    assert_eq!(commit(&svc, "g", 0, 7).await, 0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        metrics.ownership_moves.with_label_values(&["out"]).get(),
        1,
        "released by the timer, without a request"
    );
    assert_eq!(commit(&svc, "g", 0, 8).await, 15);
    assert_eq!(metrics.lease.unleased_serving.get(), 0.0);
}
