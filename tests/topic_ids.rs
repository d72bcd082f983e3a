//! Topic ids through kelp against the real SeaweedFS stack (issue 16, point 4): Metadata v8–13 is
//! answered by kelp from the gateway's v7 with a stable non-zero id per topic that kelps on one
//! filer agree on, lookups by id, and a new id for a recreated topic; v0–7 stay as they were.
//!
//! Gateway 4.48 cannot delete a topic (its DeleteTopics answers without deleting anything, and its
//! broker keeps topics in memory), so "recreated" is done where SeaweedFS keeps the topic: its
//! directory in the filer is removed and written again with new partitions.

mod raw;
mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use raw::Raw;
use support::{stack, Kelp};
use uuid::Uuid;

fn kelp_on_filer(prefix: &str) -> Kelp {
    Kelp::start(&[
        "--filer",
        &stack().filer,
        "--store-prefix",
        prefix,
        "--topic-metadata-interval-ms",
        "300",
    ])
}

fn by_name(topic: &str) -> MetadataRequestTopic {
    MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_string(topic.into()))))
}

fn metadata(
    addr: &str,
    version: i16,
    topics: Option<Vec<MetadataRequestTopic>>,
) -> MetadataResponse {
    let mut raw = Raw::connect(addr);
    let request = MetadataRequest::default()
        .with_topics(topics)
        .with_allow_auto_topic_creation(false);
    raw.call(ApiKey::Metadata, version, &request)
}

/// Every topic's id in a Metadata v12 answer for all topics.
fn ids(addr: &str) -> BTreeMap<String, Uuid> {
    metadata(addr, 12, None)
        .topics
        .into_iter()
        .filter(|t| t.error_code == 0)
        .map(|t| (t.name.expect("a name").0.to_string(), t.topic_id))
        .collect()
}

/// The id `addr` gives `topic`, waited for (bounded) until it is not `not`.
fn id_of(addr: &str, topic: &str, not: Option<Uuid>) -> Uuid {
    let start = Instant::now();
    loop {
        let got = metadata(addr, 12, Some(vec![by_name(topic)]));
        let t = &got.topics[0];
        if t.error_code == 0 && !t.topic_id.is_nil() && Some(t.topic_id) != not {
            return t.topic_id;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{topic} via {addr}: no new id within 30 s (error {}, id {})",
            t.error_code,
            t.topic_id
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits (bounded) until `addr` gives `topic` the id `want`.
fn wait_for_id(addr: &str, topic: &str, want: Uuid) {
    let start = Instant::now();
    let mut got = Uuid::nil();
    while start.elapsed() < Duration::from_secs(30) {
        got = metadata(addr, 12, Some(vec![by_name(topic)])).topics[0].topic_id;
        if got == want {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{topic} via {addr}: id {got}, not {want}, after 30 s");
}

#[test]
fn every_topic_gets_an_id_every_kelp_on_the_filer_agrees_on_across_restarts() {
    let mut a = kelp_on_filer("/kelp-ids-a");
    let b = kelp_on_filer("/kelp-ids-b");
    support::create_topic(a.addr(), "ids-agree", 3);
    // (`ids-recreated` is recreated by another test of this binary meanwhile.)
    let ids = |addr: &str| {
        let mut all = ids(addr);
        all.remove("ids-recreated");
        all
    };
    let first = ids(a.addr());
    assert!(first.contains_key("ids-agree"), "{first:?}");
    for (name, id) in &first {
        assert!(!id.is_nil(), "{name} has the zero id");
        assert_eq!(id.get_version_num(), 8, "{name}: {id}");
    }
    let distinct: std::collections::HashSet<_> = first.values().collect();
    assert_eq!(distinct.len(), first.len(), "ids are distinct: {first:?}");
    // A second kelp on the same filer, and this kelp after a restart, give the same ids.
    assert_eq!(ids(b.addr()), first);
    a.restart();
    assert_eq!(ids(a.addr()), first);
    // The answer names kelp as the only broker and every leader.
    let answer = metadata(a.addr(), 12, Some(vec![by_name("ids-agree")]));
    let port: i32 = a.addr().rsplit_once(':').unwrap().1.parse().unwrap();
    assert_eq!(answer.brokers.len(), 1);
    assert_eq!(answer.brokers[0].port, port);
    let topic = &answer.topics[0];
    assert_eq!(topic.partitions.len(), 3);
    assert!(topic
        .partitions
        .iter()
        .all(|p| p.leader_id == answer.brokers[0].node_id));
    assert_eq!(topic.topic_authorized_operations, i32::MIN);
}

#[test]
fn a_topic_asked_for_by_id_is_answered_and_an_unknown_id_is_100() {
    let kelp = kelp_on_filer("/kelp-ids-by-id");
    support::create_topic(kelp.addr(), "ids-by-id", 2);
    let id = id_of(kelp.addr(), "ids-by-id", None);
    let unknown = Uuid::from_u128(0x0123_4567_89ab_8def_8123_4567_89ab_cdef);
    let topics = vec![
        MetadataRequestTopic::default()
            .with_name(None)
            .with_topic_id(id),
        MetadataRequestTopic::default()
            .with_name(None)
            .with_topic_id(unknown),
    ];
    let answer = metadata(kelp.addr(), 12, Some(topics));
    assert_eq!(answer.topics.len(), 2, "{answer:?}");
    let found = answer.topics.iter().find(|t| t.topic_id == id).unwrap();
    assert_eq!(found.error_code, 0);
    assert_eq!(found.name.as_ref().unwrap().0.as_str(), "ids-by-id");
    assert_eq!(found.partitions.len(), 2);
    let missing = answer
        .topics
        .iter()
        .find(|t| t.topic_id == unknown)
        .unwrap();
    assert_eq!(missing.error_code, 100, "UNKNOWN_TOPIC_ID");
    assert!(missing.name.is_none());
}

#[test]
fn a_recreated_topic_gets_a_new_id() {
    let a = kelp_on_filer("/kelp-ids-recreate-a");
    let b = kelp_on_filer("/kelp-ids-recreate-b");
    let topic = "ids-recreated";
    support::create_topic(a.addr(), topic, 1);
    let old = id_of(a.addr(), topic, None);
    assert_eq!(id_of(b.addr(), topic, None), old);
    // Deleted and created again where SeaweedFS keeps it: new partitions, a new creation time.
    let dir = format!("/topics/kafka/{topic}");
    let (status, conf) = filer_http("GET", &format!("{dir}/topic.conf"), b"");
    assert_eq!(status, 200);
    let conf = String::from_utf8(conf).unwrap();
    let (status, _) = filer_http("DELETE", &format!("{dir}?recursive=true"), b"");
    assert!(status == 204 || status == 200, "DELETE {status}");
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        .to_string();
    let recreated = replace_unix_time_ns(&conf, &now_ns);
    let (status, _) = filer_http("PUT", &format!("{dir}/topic.conf"), recreated.as_bytes());
    assert!((200..300).contains(&status), "PUT {status}");
    // The id every kelp derives for the new incarnation (`src/topics/id.rs`).
    let ns: i64 = now_ns.parse().unwrap();
    let new = kelp::topics::id::topic_id(topic, &kelp::topics::id::Incarnation::Created(ns));
    assert_ne!(new, old);
    wait_for_id(a.addr(), topic, new);
    wait_for_id(b.addr(), topic, new);
}

#[test]
fn metadata_v0_to_v7_answers_are_the_gateways_rewritten() {
    let kelp = Kelp::start(&[]);
    support::create_topic(kelp.addr(), "ids-classic", 2);
    let identity = kelp::backend::Identity {
        node_id: 1, // support::Kelp's --node-id
        host: StrBytes::from_string(kelp.addr().rsplit_once(':').unwrap().0.to_string()),
        port: kelp.addr().rsplit_once(':').unwrap().1.parse().unwrap(),
    };
    for version in 0..=7 {
        let request = MetadataRequest::default().with_topics(Some(vec![by_name("ids-classic")]));
        let mut through_kelp = Raw::connect(kelp.addr());
        through_kelp.send(ApiKey::Metadata, version, &request);
        let from_kelp = through_kelp.recv_frame().unwrap();
        let mut direct = Raw::connect(&stack().kafka);
        direct.send(ApiKey::Metadata, version, &request);
        let from_gateway = direct.recv_frame().unwrap();
        let rewritten =
            kelp::backend::rewrite::rewrite(ApiKey::Metadata, version, from_gateway, &identity)
                .unwrap();
        assert_eq!(&rewritten[4..], &from_kelp[..], "v{version}: byte for byte");
    }
}

#[test]
fn librdkafka_produces_and_reads_metadata_through_the_new_versions() {
    let kelp = Kelp::start(&[]);
    support::create_topic(kelp.addr(), "ids-librdkafka", 2);
    // librdkafka asks Metadata at kelp's highest version it knows (v12 for 2.12).
    let md = support::metadata(kelp.addr(), Some("ids-librdkafka"));
    let topic = md
        .topics()
        .iter()
        .find(|t| t.name() == "ids-librdkafka")
        .unwrap();
    assert!(topic.error().is_none());
    assert_eq!(topic.partitions().len(), 2);
    assert_eq!(support::produce(kelp.addr(), "ids-librdkafka", 20), 20);
    assert!(kelp
        .log()
        .lines()
        .all(|l| !l.contains("cannot answer Metadata")));
}

/// Swaps every partition's `unixTimeNs` in a `topic.conf` for `ns`.
fn replace_unix_time_ns(conf: &str, ns: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(conf).expect("topic.conf is JSON");
    for a in v["brokerPartitionAssignments"]
        .as_array_mut()
        .expect("assignments")
    {
        a["partition"]["unixTimeNs"] = serde_json::Value::String(ns.to_string());
    }
    v.to_string()
}

/// One plain HTTP/1.0 request to the stack's filer: (status, body).
fn filer_http(method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let filer = stack().filer.trim_start_matches("http://").to_string();
    let mut s = TcpStream::connect(&filer).unwrap_or_else(|e| panic!("connect {filer}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {filer}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).unwrap();
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP answer");
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status");
    (status, answer[split + 4..].to_vec())
}
