//! Test f of tests/consumer_protocol.rs: a classic member and a consumer-protocol member in one
//! group, per Kafka 4's migration rules (policy `bidirectional`): the consumer member upgrades the
//! classic group online, the classic member consumes throughout, the group is classic again once
//! the consumer member has left.

use std::time::{Duration, Instant};

use crate::consumer::timeline::{double_owned, dropped_to_zero, kept_and_paused};
use crate::consumer::{self, consumed, cover, delivered, lives, member, serial};
use crate::ownership::{flag, trickle, StopGuard};
use crate::peers::{wait_count, wall_now};
use crate::support;

#[test]
fn classic_and_consumer_members_in_one_group() {
    let _serial = serial();
    let t0 = Instant::now();
    const P: i32 = 6;
    let kelp = consumer::kelp("mixed", &[]);
    let (topic, group) = ("kip848-mixed", "g-kip848-mixed");
    support::create_topic(kelp.addr(), topic, P);
    let stop_producing = flag();
    let _stops = StopGuard(vec![stop_producing.clone()]);
    let producer = trickle(
        kelp.addr().to_string(),
        topic,
        12,
        Duration::from_millis(300),
        Duration::from_secs(120),
        stop_producing.clone(),
    );
    let mut classic =
        consumer::classic_member(kelp.addr(), group, "classic", topic, "cooperative-sticky");
    cover(
        "the classic member alone",
        P,
        Duration::from_secs(60),
        &[&classic],
        &|| consumer::diag(&[&classic], &kelp),
    );
    let kind = consumer::wait_group_type(kelp.addr(), group, "CLASSIC", Duration::from_secs(10));
    assert_eq!(
        kind.as_ref().map(|k| k.0.as_str()),
        Some("CLASSIC"),
        "before the upgrade: {kind:?}"
    );

    // A consumer-protocol member joins: the group is upgraded online.
    let up_from = wall_now();
    let mut modern = member(kelp.addr(), group, "consumer", topic);
    let kind = consumer::wait_group_type(kelp.addr(), group, "CONSUMER", Duration::from_secs(30));
    let took = cover(
        "classic + consumer member",
        P,
        Duration::from_secs(60),
        &[&classic, &modern],
        &|| consumer::diag(&[&classic, &modern], &kelp),
    );
    let marks = (classic.n_records(), modern.n_records());
    wait_count(
        "the classic member consuming after the upgrade",
        marks.0 + 1,
        Duration::from_secs(20),
        || classic.n_records(),
    );
    wait_count(
        "the consumer member consuming",
        marks.1 + 1,
        Duration::from_secs(20),
        || modern.n_records(),
    );
    let up_to = wall_now();
    let ls = lives(&[&classic, &modern], &[]);
    let (kept, paused) = kept_and_paused(&ls[0], up_from, up_to);
    eprintln!(
        "f. upgrade: listed as {kind:?}; both own their share {took:?} after the join: classic {:?}, consumer {:?}; \
         the classic member kept {kept:?} (without some of them {paused:.2} s)",
        classic.partitions(),
        modern.partitions()
    );
    assert_eq!(
        kind.map(|k| k.0),
        Some("CONSUMER".to_string()),
        "f. not upgraded to a consumer group"
    );
    assert_eq!(
        dropped_to_zero(&ls[0], up_from, up_to),
        None,
        "f. the classic member went to zero partitions"
    );
    let doubles = double_owned(&ls, up_from, up_to);
    assert!(
        doubles.is_empty(),
        "f. partitions owned twice during the upgrade: {doubles:?}"
    );

    // The consumer member leaves: the group goes back to classic, the classic member owns all.
    let (left_at, closed) = modern.close(Duration::from_secs(10));
    assert!(
        closed,
        "f. the consumer member did not close: {}",
        modern.summary()
    );
    let kind = consumer::wait_group_type(kelp.addr(), group, "CLASSIC", Duration::from_secs(30));
    let took = cover(
        "the classic member after the downgrade",
        P,
        Duration::from_secs(60),
        &[&classic],
        &|| consumer::diag(&[&classic], &kelp),
    );
    let end = wall_now();
    let ls = lives(&[&classic, &modern], &[(1, left_at)]);
    eprintln!("f. downgrade: listed as {kind:?}; the classic member owns all {P} {took:?} after the close; {:?}", classic.history_since(t0));
    assert_eq!(
        kind.map(|k| k.0),
        Some("CLASSIC".to_string()),
        "f. not back to a classic group"
    );
    let doubles = double_owned(&ls, up_from, end);
    assert!(doubles.is_empty(), "f. partitions owned twice: {doubles:?}");
    stop_producing.store(true, std::sync::atomic::Ordering::SeqCst);
    let produced = producer.join().expect("producer");
    let want = delivered(&produced);
    wait_count(
        "every produced message consumed",
        want.len(),
        Duration::from_secs(60),
        || consumed(&[&classic, &modern]).intersection(&want).count(),
    );
    classic.close(Duration::from_secs(10));
    eprintln!(
        "classic_and_consumer_members_in_one_group: {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    assert!(
        !kelp.log().contains("panicked"),
        "kelp panicked: {}",
        kelp.log_path().display()
    );
}
