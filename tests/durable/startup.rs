//! The on-demand measurement of kelp's startup over 10,000 stored groups.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::shared;
use crate::support::committed;
use crate::support::{self, Kelp};

/// kelp's own startup over 10,000 stored groups (3 members each, one offsets file of 3 partitions):
/// from spawning the process to its "loaded" log line, and to the first OffsetFetch answered.
/// `cargo test --release --test e2e_durable -- --ignored --nocapture startup_loads_10k`
#[test]
#[ignore = "a measurement, run on demand"]
fn startup_loads_10k_group_records() {
    use kelp::store::{CommittedOffset, FilerConfig, FilerStore, Store, StoredGroup, StoredMember};
    const GROUPS: usize = 10_000;
    let _shared = shared();
    let prefix = format!("/kelp-bench-10k-{}", std::process::id());
    let filer = support::stack().filer.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let record = StoredGroup {
        protocol_type: Some("consumer".into()),
        protocol_name: Some("range".into()),
        generation: 7,
        leader: Some("member-0".into()),
        state_timestamp_ms: 1_795_000_000_000,
        members: (0..3)
            .map(|i| StoredMember {
                member_id: format!("member-{i}"),
                group_instance_id: None,
                client_id: "rdkafka".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 300_000,
                session_timeout_ms: 45_000,
                subscription: bytes::Bytes::from_static(b"\0\x03\0\0\0\x01\0\x06orders\0\0\0\0"),
                assignment: bytes::Bytes::from(vec![
                    0, 3, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 1, 0, 0, 0, i,
                ]),
            })
            .collect(),
    }
    .encode();
    let t = Instant::now();
    runtime.block_on(async {
        let mut config = FilerConfig::new(filer.clone());
        config.prefix = prefix.clone();
        let store = FilerStore::new(config).expect("store");
        for chunk in (0..GROUPS).collect::<Vec<_>>().chunks(1000) {
            let writes = chunk.iter().flat_map(|i| {
                let g = format!("bench-group-{i:05}");
                let offsets = (0..3)
                    .map(|p| {
                        let o = CommittedOffset {
                            offset: *i as i64,
                            leader_epoch: -1,
                            metadata: String::new(),
                            commit_timestamp_ms: 1_795_000_000_000,
                            expire_timestamp_ms: None,
                        };
                        ("orders".to_string(), p, o)
                    })
                    .collect();
                [
                    store.put_group(&g, record.clone()),
                    store.put_offsets(&g, offsets),
                ]
            });
            for r in futures::future::join_all(writes).await {
                r.expect("write");
            }
        }
    });
    eprintln!(
        "wrote {GROUPS} group records + offsets files in {:.2?}",
        t.elapsed()
    );

    let t0 = Instant::now();
    let kelp = Kelp::start(&["--filer", &filer, "--store-prefix", &prefix]);
    let listening = t0.elapsed();
    let mut line = String::new();
    support::wait_until("the loaded log line", Duration::from_secs(300), || {
        line = kelp
            .log()
            .lines()
            .find(|l| l.contains("loaded the groups"))
            .unwrap_or_default()
            .to_string();
        !line.is_empty()
    });
    let loaded = t0.elapsed();
    let answered = {
        let got = committed(kelp.addr(), "bench-group-09999", "orders", 3);
        assert_eq!(got, BTreeMap::from([(0, 9999), (1, 9999), (2, 9999)]));
        t0.elapsed()
    };
    assert!(line.contains(&format!("groups={GROUPS}")), "{line}");
    eprintln!(
        "kelp startup over {GROUPS} stored groups: listening after {listening:.2?}; loaded after \
         {loaded:.2?} (log: {}); first OffsetFetch answered after {answered:.2?}",
        line.split("loaded the groups and offsets kept in the store")
            .nth(1)
            .unwrap_or("")
            .trim()
    );
}
