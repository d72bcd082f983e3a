//! Consumer group (KIP-848) benchmarks of the state machine (not tests): ConsumerGroupHeartbeat
//! ops/s on one core (steady heartbeats of a Stable 10-member group, and whole groups joining and
//! reconciling), and the heap of 10,000 Stable groups × 10 members on a 30-partition topic.
//!
//! `cargo bench --bench consumer_groups`

use std::time::Instant;

use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, GroupId, TopicName};
use kafka_protocol::protocol::StrBytes;
use kelp::group::consumer::{CallContext, ConsumerConfig, ConsumerGroups, Topics};
use uuid::Uuid;

#[path = "common/counting_alloc.rs"]
mod counting_alloc;

const TOPIC: u128 = 0x7070;
const PARTITIONS: i32 = 30;
const MEMBERS: usize = 10;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn join(group: &str, member: &str) -> ConsumerGroupHeartbeatRequest {
    ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_member_id(s(member))
        .with_member_epoch(0)
        .with_rebalance_timeout_ms(300_000)
        .with_subscribed_topic_names(Some(vec![TopicName(s("t"))]))
        .with_topic_partitions(Some(vec![]))
}

/// A steady heartbeat: epoch, and the owned partitions only when `owned` (librdkafka sends them
/// when they changed).
fn beat(
    group: &str,
    member: &str,
    epoch: i32,
    owned: Option<Vec<i32>>,
) -> ConsumerGroupHeartbeatRequest {
    ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_member_id(s(member))
        .with_member_epoch(epoch)
        .with_rebalance_timeout_ms(-1)
        .with_topic_partitions(owned.map(|ps| {
            vec![TopicPartitions::default()
                .with_topic_id(Uuid::from_u128(TOPIC))
                .with_partitions(ps)]
        }))
}

struct Machine {
    c: ConsumerGroups,
    cx: CallContext,
    now: u64,
    calls: u64,
}

impl Machine {
    fn new() -> Machine {
        let mut c = ConsumerGroups::with_seed(ConsumerConfig::default(), 1);
        let topics = Topics::new([("t".to_string(), Uuid::from_u128(TOPIC), PARTITIONS)]);
        c.set_topics(0, topics, &mut Vec::new());
        Machine {
            c,
            cx: CallContext {
                api_version: 1,
                client_id: "bench".into(),
                client_host: "/127.0.0.1".into(),
            },
            now: 0,
            calls: 0,
        }
    }

    fn call(&mut self, req: &ConsumerGroupHeartbeatRequest) -> (i32, Option<Vec<i32>>) {
        self.calls += 1;
        let r = self.c.heartbeat(self.now, &self.cx, req, &mut Vec::new());
        assert_eq!(r.error_code, 0, "{:?}", r.error_message);
        let owned = r.assignment.map(|a| {
            a.topic_partitions
                .into_iter()
                .flat_map(|tp| tp.partitions)
                .collect()
        });
        (r.member_epoch, owned)
    }

    /// Forms a Stable group of `MEMBERS`: each joins, then everyone heartbeats reporting what it
    /// was last given until the group is Stable (bounded).
    fn form(&mut self, group: &str) -> Vec<(String, i32)> {
        let mut members: Vec<(String, i32, Vec<i32>)> = (0..MEMBERS)
            .map(|i| {
                let id = format!("{group}-member-{i:02}");
                let (epoch, owned) = self.call(&join(group, &id));
                (id, epoch, owned.unwrap_or_default())
            })
            .collect();
        for _ in 0..10 {
            for (id, epoch, owned) in members.iter_mut() {
                let (e, given) = self.call(&beat(group, id, *epoch, Some(owned.clone())));
                *epoch = e;
                if let Some(g) = given {
                    *owned = g;
                }
            }
            let g = self.c.group(group).expect("group");
            if g.state.name() == "Stable" {
                return members.into_iter().map(|(id, e, _)| (id, e)).collect();
            }
        }
        panic!("{group} did not become Stable");
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "consumer group benchmark: skipped (run it with `cargo bench --bench consumer_groups`)"
        );
        return;
    }
    // Whole groups: 10 joins plus the heartbeats that reconcile them, counted per call.
    let mut m = Machine::new();
    let groups = 5_000;
    let start = Instant::now();
    for g in 0..groups {
        m.form(&format!("form-{g}"));
    }
    let forming = m.calls as f64 / start.elapsed().as_secs_f64();
    let per_group = m.calls as f64 / groups as f64;
    // Steady state: heartbeats of a Stable 10-member group, without and with owned partitions.
    let mut m = Machine::new();
    let members = m.form("hb");
    let beats = 1_000_000;
    let plain: Vec<_> = members
        .iter()
        .map(|(id, e)| beat("hb", id, *e, None))
        .collect();
    let start = Instant::now();
    for i in 0..beats {
        m.now += 1;
        m.call(&plain[i % plain.len()]);
    }
    let steady = beats as f64 / start.elapsed().as_secs_f64();
    let g = m.c.group("hb").expect("group");
    let full: Vec<_> = members
        .iter()
        .map(|(id, e)| {
            let owned = g.members[id].assigned.values().flatten().copied().collect();
            beat("hb", id, *e, Some(owned))
        })
        .collect();
    let start = Instant::now();
    for i in 0..beats {
        m.now += 1;
        m.call(&full[i % full.len()]);
    }
    let steady_owned = beats as f64 / start.elapsed().as_secs_f64();
    // Memory: 10,000 Stable groups x 10 members.
    let before = counting_alloc::live();
    let mut m = Machine::new();
    for g in 0..10_000 {
        m.form(&format!("memory-group-{g:05}"));
    }
    let after = counting_alloc::live();
    assert_eq!(m.c.group_count(), 10_000);
    let memory = (after - before) as f64 / (1024.0 * 1024.0);
    println!("| measurement | value |");
    println!("|---|---|");
    println!("| state machine, ConsumerGroupHeartbeat, Stable 10-member group, one core | {steady:.0} ops/s |");
    println!("| 〃 with owned partitions in every heartbeat | {steady_owned:.0} ops/s |");
    println!("| state machine, 10-member groups joining and reconciling ({per_group:.0} heartbeats a group), one core | {forming:.0} ops/s |");
    println!("| heap for 10,000 consumer groups x 10 members, 30 partitions each (counting allocator) | {memory:.1} MiB |");
}
