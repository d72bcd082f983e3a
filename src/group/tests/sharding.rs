//! Several kelps (README §5) on the fake clock: a sharded coordinator refuses groups it has not
//! adopted with NOT_COORDINATOR in every API's shape; a group adopted from what its previous owner
//! stored goes on without a rebalance; a released group answers its parked calls 16, stops its
//! timers and leaves nothing behind, even when a write or an import lands after the release.

use super::*;
use crate::group::GroupState::*;
use crate::group::LoadedGroup;

const NOT_COORDINATOR: i16 = 16;

fn sharded() -> Harness {
    let mut h = Harness::new();
    h.c.shard();
    h
}

fn adopt(h: &mut Harness, group: &str, loaded: Option<LoadedGroup>) {
    let mut out = Vec::new();
    h.c.adopt(h.now, group, loaded, &mut out);
    h.absorb(out);
}

fn release(h: &mut Harness, group: &str) {
    let mut out = Vec::new();
    h.c.release(h.now, group, &mut out);
    h.absorb(out);
}

#[test]
fn a_group_not_adopted_is_refused_16_in_every_api() {
    let mut h = sharded();
    let t = h.join(jr());
    assert_eq!(h.jres(t).error_code, NOT_COORDINATOR);
    let t = h.sync("m", 1, &[]);
    assert_eq!(h.sres(t).error_code, NOT_COORDINATOR);
    assert_eq!(h.heartbeat("m", 1), NOT_COORDINATOR);
    assert_eq!(h.leave(4, G, &[("m", None)]).error_code, NOT_COORDINATOR);
    let r = h.commit_full(8, G, "m", None, 1, &[("t", 0, 5, ""), ("t", 1, 6, "")]);
    assert_eq!(commit_codes(&r), vec![NOT_COORDINATOR, NOT_COORDINATOR]);
    let t = h_fetch(&mut h, 1);
    let r = h.fetch_response(t);
    let codes: Vec<i16> = r.topics[0]
        .partitions
        .iter()
        .map(|p| p.error_code)
        .collect();
    assert_eq!(
        codes,
        vec![NOT_COORDINATOR, NOT_COORDINATOR],
        "v1: per partition"
    );
    let t = h_fetch(&mut h, 5);
    let r = h.fetch_response(t);
    assert_eq!(r.error_code, NOT_COORDINATOR, "v2+: top level");
    assert_eq!(h.describe_v(5, G).error_code, NOT_COORDINATOR);
    assert_eq!(h.c.group_count(), 0, "nothing was created");
    assert!(
        h.disk.records.is_empty() && h.disk.offsets.is_empty(),
        "nothing was written"
    );
    assert!(h.held_imports.is_empty());
}

fn h_fetch(h: &mut Harness, v: i16) -> Token {
    h.fetch_send(v, G, Some(("t", &[0, 1])))
}

#[test]
fn an_adopted_new_group_forms_as_usual() {
    let mut h = Harness::new();
    h.c.shard();
    adopt(&mut h, G, None);
    assert!(h.c.owns(G) && !h.c.owns("other"));
    let ids = h.stable(2);
    assert_eq!((h.state(), h.gen()), (Stable, 1));
    assert_eq!(h.heartbeat(&ids[0], 1), 0);
    let t = h.join(jr().group("other"));
    assert_eq!(
        h.jres(t).error_code,
        NOT_COORDINATOR,
        "only adopted groups are served"
    );
}

#[test]
fn a_stable_group_adopted_from_its_previous_owner_does_not_rebalance() {
    // The previous owner: a stable group of three with committed offsets.
    let mut old = Harness::new();
    old.c.shard();
    adopt(&mut old, G, None);
    let ids = old.stable(3);
    let generation = old.gen();
    assert_eq!(
        old.commit_full(8, G, &ids[0], None, generation, &[("t", 0, 42, "m")])
            .topics[0]
            .partitions[0]
            .error_code,
        0
    );
    let assignments: Vec<Bytes> = ids.iter().map(|m| old.assignment(m)).collect();

    // The new owner adopts what the old one stored, a little later.
    let mut new = Harness::new();
    new.now = old.now + 1500;
    new.c.shard();
    let loaded = old.disk.loaded().into_iter().find(|g| g.group == G);
    adopt(&mut new, G, loaded);
    assert_eq!((new.state(), new.gen()), (Stable, generation));
    for (m, a) in ids.iter().zip(&assignments) {
        assert_eq!(new.heartbeat(m, generation), 0, "{m} goes on");
        assert_eq!(&new.assignment(m), a);
    }
    assert_eq!(new.committed(G, "t", 0), 42);
    assert_eq!(new.rebalances(), 0);

    // Members keep their sessions with heartbeats; one that stops is expired as usual.
    for _ in 0..9 {
        new.advance(1000);
        for m in &ids[..2] {
            assert_eq!(new.heartbeat(m, generation), 0);
        }
    }
    assert_eq!(new.state(), Stable);
    new.advance(1500);
    assert_eq!(
        new.state(),
        PreparingRebalance,
        "the silent member's session (10 s from the adoption) expired"
    );
    assert!(!new.member_ids().contains(&ids[2]));
}

#[test]
fn release_answers_parked_calls_16_and_forgets_the_group() {
    let mut h = Harness::new();
    h.c.shard();
    adopt(&mut h, G, None);
    let ids = h.stable(2);
    // A third member joins: the join is parked while the others rejoin.
    let (_, parked) = h.new_member(jr());
    assert!(!h.answered(parked));
    assert_eq!(h.state(), PreparingRebalance);
    release(&mut h, G);
    assert_eq!(h.jres(parked).error_code, NOT_COORDINATOR);
    assert!(!h.c.owns(G));
    assert_eq!(h.c.group_count(), 0);
    assert!(h.events.contains(&Event::GroupReleased { group: G.into() }));
    assert_eq!(h.heartbeat(&ids[0], 1), NOT_COORDINATOR);
    // No timer of the group fires any more: nothing happens to it, nothing is written.
    let (events, writes) = (h.events.len(), h.stream.len());
    h.advance(120_000);
    assert_eq!(h.events.len(), events, "no event after the release");
    assert_eq!(h.stream.len(), writes, "no output after the release");
    assert!(h.all_answered());
}

#[test]
fn a_commit_that_lands_after_release_is_answered_and_leaves_no_state() {
    let mut h = Harness::new();
    h.c.shard();
    adopt(&mut h, G, None);
    let ids = h.stable(1);
    // The first commit imports the gateway's offsets (none); the second is a plain write.
    assert_eq!(
        commit_codes(&h.commit_full(8, G, &ids[0], None, 1, &[("t", 0, 6, "")])),
        vec![0]
    );
    h.hold_writes = true;
    let t = h.commit_send(8, G, &ids[0], None, 1, &[("t", 0, 7, "")]);
    assert!(!h.answered(t));
    release(&mut h, G);
    h.settle(usize::MAX, Ok(()));
    assert_eq!(
        commit_codes(&h.commit_response(t)),
        vec![0],
        "the write is durable: acknowledged"
    );
    assert_eq!(
        h.c.group_count(),
        0,
        "the late write did not bring the group back"
    );
    assert_eq!(h.disk.offsets[G][&("t".to_string(), 0)].offset, 7);
    // Adopting it again reads the store, which has the commit.
    h.hold_writes = false;
    let loaded = h.disk.loaded().into_iter().find(|g| g.group == G);
    adopt(&mut h, G, loaded);
    assert_eq!(h.committed(G, "t", 0), 7);
}

#[test]
fn an_import_that_finishes_after_release_creates_nothing() {
    let mut h = sharded();
    adopt(&mut h, G, None);
    h.hold_writes = true;
    h.gateway.insert(
        G.into(),
        vec![(
            "t".into(),
            0,
            crate::group::CommittedOffset {
                offset: 9,
                leader_epoch: -1,
                metadata: String::new(),
                commit_timestamp: 0,
                expire_timestamp: None,
            },
        )],
    );
    let t = h.fetch_send(5, G, Some(("t", &[0])));
    assert_eq!(
        h.held_imports.len(),
        1,
        "the fetch waits for the gateway's offsets"
    );
    release(&mut h, G);
    h.settle_imports(None);
    assert_eq!(h.fetch_response(t).error_code, NOT_COORDINATOR);
    assert_eq!(h.c.group_count(), 0);
    assert!(h.held.is_empty(), "nothing is written for a released group");
}
