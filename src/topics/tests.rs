//! The registry without a filer: ids from names and this kelp's incarnations, learning from
//! Metadata answers, and what `subscribe` publishes.

use super::*;

/// A registry whose gateway is never asked (tests call `install` and `learn` directly).
pub(crate) fn registry() -> TopicIds {
    let backend = Backend::new("127.0.0.1:1".to_string());
    TopicIds::new(backend, None, Duration::from_secs(5), &Registry::new()).unwrap()
}

fn topics(list: &[(&str, i32)]) -> Vec<(String, i32)> {
    list.iter().map(|(n, p)| (n.to_string(), *p)).collect()
}

#[tokio::test]
async fn every_listed_topic_gets_an_id_and_subscribers_see_the_table() {
    let ids = registry();
    let mut rx = ids.subscribe();
    assert!(rx.borrow_and_update().iter().next().is_none());
    ids.install(0, topics(&[("a", 3), ("b", 1)]), None).await;
    assert!(rx.has_changed().unwrap());
    let table = rx.borrow_and_update().clone();
    let a = ids.id_of("a").unwrap();
    assert_eq!(table.get("a").map(|t| (t.id, t.partitions)), Some((a, 3)));
    assert_eq!(ids.name_of(a).as_deref(), Some("a"));
    assert_eq!(a, topic_id("a", &Incarnation::Local(0)));
    assert_ne!(ids.id_of("b"), Some(a));
    assert_eq!(ids.id_of("c"), None);
    // The same topics again: nothing is published.
    ids.install(0, topics(&[("b", 1), ("a", 3)]), None).await;
    assert!(!rx.has_changed().unwrap());
    // A partition count change is.
    ids.install(0, topics(&[("a", 4), ("b", 1)]), None).await;
    assert!(rx.has_changed().unwrap());
    assert_eq!(rx.borrow_and_update().get("a").unwrap().partitions, 4);
}

#[tokio::test]
async fn without_a_filer_a_topic_that_vanished_comes_back_with_a_new_id() {
    let ids = registry();
    ids.install(0, topics(&[("a", 1), ("b", 1)]), None).await;
    let (a1, b1) = (ids.id_of("a").unwrap(), ids.id_of("b").unwrap());
    ids.install(0, topics(&[("b", 1)]), None).await;
    assert_eq!(ids.id_of("a"), None);
    assert_eq!(ids.name_of(a1), None);
    ids.install(0, topics(&[("a", 1), ("b", 1)]), None).await;
    let a2 = ids.id_of("a").unwrap();
    assert_ne!(a1, a2, "recreated");
    assert_eq!(ids.id_of("b"), Some(b1), "kept");
    // A second kelp without a filer that never saw `a` go agrees on `b` only.
    let other = registry();
    other.install(0, topics(&[("a", 1), ("b", 1)]), None).await;
    assert_eq!(other.id_of("b"), Some(b1));
    assert_eq!(other.id_of("a"), Some(a1));
}

#[tokio::test]
async fn a_learned_topic_survives_a_refresh_that_began_before_it() {
    let ids = registry();
    ids.install(0, topics(&[("a", 1)]), None).await;
    let started = lock(&ids.inner.state).seq;
    let learned = ids.learn(topics(&[("new", 2)])).await;
    let id = learned["new"];
    assert_eq!(ids.id_of("new"), Some(id));
    // The refresh read the gateway before `new` existed: `new` stays.
    ids.install(started, topics(&[("a", 1)]), None).await;
    assert_eq!(ids.id_of("new"), Some(id));
    // A refresh that began after the learning and does not list it: gone.
    let later = lock(&ids.inner.state).seq;
    ids.install(later, topics(&[("a", 1)]), None).await;
    assert_eq!(ids.id_of("new"), None);
}

#[tokio::test]
async fn refresh_soon_is_coalesced() {
    let ids = registry();
    for _ in 0..100 {
        ids.refresh_soon();
    }
    // One stored permit at most: the first wait returns at once, the second does not.
    let first = tokio::time::timeout(Duration::from_millis(50), ids.inner.wake.notified()).await;
    assert!(first.is_ok());
    let second = tokio::time::timeout(Duration::from_millis(50), ids.inner.wake.notified()).await;
    assert!(second.is_err());
}

#[test]
fn translation_asks_the_gateways_highest_version_only_above_it() {
    let backend = Backend::new("127.0.0.1:1".to_string());
    // No ApiVersions answer yet: the 4.48 gateway's v7 is assumed.
    assert_eq!(translated_version(&backend, 7), None);
    assert_eq!(translated_version(&backend, 12), Some(7));
    assert_eq!(gateway_version(&backend), 7);
}
