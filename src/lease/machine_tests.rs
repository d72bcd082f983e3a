//! The lease rules on a fake clock: given a lease in some state, when the filer answers X at time
//! T, then it is (not) servable and the shell is told Y.

use std::time::{Duration, Instant};

use super::*;

fn timing() -> Timing {
    Timing::from_ttl(Duration::from_secs(2))
}

fn ms(t0: Instant, ms: u64) -> Instant {
    t0 + Duration::from_millis(ms)
}

fn granted(token: &str) -> Answer {
    Answer::Granted {
        token: token.into(),
    }
}

fn held_by(owner: &str) -> Answer {
    Answer::Held {
        owner: owner.into(),
    }
}

/// A lease taken at `t0` after the predecessor was seen in lineage 1, confirmed by the round.
fn taken_after_predecessor(t0: Instant) -> Lease {
    let t = timing();
    let mut lease = Lease::default();
    assert_eq!(lease.ask(t0, true), (Some(Ask::Take), Change::None));
    lease.answered(&t, &Ask::Take, t0, t0, 1, held_by("kelp-b"));
    assert_eq!(lease.holder(), Some("kelp-b"));
    let (ask, _) = lease.ask(ms(t0, 500), true);
    assert_eq!(ask, Some(Ask::Take));
    let change = lease.answered(
        &t,
        &Ask::Take,
        ms(t0, 500),
        ms(t0, 501),
        1,
        granted("tok-1"),
    );
    assert_eq!(change, Change::Taken);
    assert!(
        !lease.servable(ms(t0, 501)),
        "not before the round confirms the lineage"
    );
    lease.confirm(&t, true, ms(t0, 502));
    lease
}

#[test]
fn a_lease_taken_after_its_predecessor_was_seen_is_served_once_the_round_confirms() {
    let t0 = Instant::now();
    let lease = taken_after_predecessor(t0);
    assert!(lease.servable(ms(t0, 502)));
    assert_eq!(lease.term(), 1);
    assert_eq!(lease.holder(), None);
}

#[test]
fn a_fresh_take_nobody_was_seen_holding_waits_a_whole_ttl() {
    let (t, t0) = (timing(), Instant::now());
    let mut lease = Lease::default();
    lease.ask(t0, true);
    assert_eq!(
        lease.answered(&t, &Ask::Take, t0, ms(t0, 1), 1, granted("tok")),
        Change::Taken
    );
    lease.confirm(&t, true, ms(t0, 2));
    assert!(
        !lease.servable(ms(t0, 1999)),
        "a forgotten holder may still serve"
    );
    // Renewed meanwhile, so its deadline moved on.
    lease.answered(
        &t,
        &Ask::Renew("tok".into()),
        ms(t0, 1000),
        ms(t0, 1001),
        1,
        granted("tok2"),
    );
    assert!(lease.servable(ms(t0, 2000)));
}

#[test]
fn a_take_whose_lineage_the_round_does_not_confirm_waits_a_whole_ttl() {
    let (t, t0) = (timing(), Instant::now());
    let mut lease = Lease::default();
    lease.ask(t0, true);
    lease.answered(&t, &Ask::Take, t0, t0, 1, held_by("kelp-b"));
    lease.ask(ms(t0, 500), true);
    lease.answered(&t, &Ask::Take, ms(t0, 500), ms(t0, 501), 1, granted("tok"));
    // The sentinel was refused after the take: the filer restarted in between.
    lease.confirm(&t, false, ms(t0, 502));
    assert!(!lease.servable(ms(t0, 2499)));
}

#[test]
fn a_predecessor_seen_in_an_earlier_lineage_does_not_count() {
    let (t, t0) = (timing(), Instant::now());
    let mut lease = Lease::default();
    lease.ask(t0, true);
    lease.answered(&t, &Ask::Take, t0, t0, 1, held_by("kelp-b"));
    // The filer forgot its leases (lineage 2) and granted it.
    lease.ask(ms(t0, 500), true);
    lease.answered(&t, &Ask::Take, ms(t0, 500), ms(t0, 501), 2, granted("tok"));
    lease.confirm(&t, true, ms(t0, 502));
    assert!(!lease.servable(ms(t0, 502)));
    assert!(!lease.servable(ms(t0, 2499)));
}

#[test]
fn a_held_lease_stops_being_served_a_margin_before_the_filer_can_grant_it_again() {
    let (t, t0) = (timing(), Instant::now());
    let lease = taken_after_predecessor(t0);
    // Taken with a request sent at 500 ms: the filer keeps it until at least 2500 ms.
    assert!(lease.servable(ms(t0, 1999)));
    assert!(!lease.servable(ms(t0, 2000)));
    assert_eq!(
        lease.window().map(|w| w.1),
        Some(ms(t0, 500) + t.ttl - t.margin)
    );
}

#[test]
fn renewals_move_the_deadline_from_when_they_were_sent() {
    let (t, t0) = (timing(), Instant::now());
    let mut lease = taken_after_predecessor(t0);
    let (ask, _) = lease.ask(ms(t0, 1000), true);
    assert_eq!(ask, Some(Ask::Renew("tok-1".into())));
    // Answered late: the deadline counts from the send, not the answer.
    lease.answered(
        &t,
        &Ask::Renew("tok-1".into()),
        ms(t0, 1000),
        ms(t0, 1400),
        1,
        granted("tok-2"),
    );
    assert!(lease.servable(ms(t0, 2499)));
    assert!(!lease.servable(ms(t0, 2500)));
    assert_eq!(lease.term(), 1, "a renewal is the same term");
    let (ask, _) = lease.ask(ms(t0, 1500), true);
    assert_eq!(ask, Some(Ask::Renew("tok-2".into())));
}

#[test]
fn a_refused_renewal_ends_the_lease_at_once() {
    let (t, t0) = (timing(), Instant::now());
    let mut lease = taken_after_predecessor(t0);
    let change = lease.answered(
        &t,
        &Ask::Renew("tok-1".into()),
        ms(t0, 1000),
        ms(t0, 1001),
        1,
        Answer::Refused("lock: token mismatch".into()),
    );
    assert_eq!(change, Change::Lost(Loss::Refused));
    assert!(!lease.servable(ms(t0, 1001)));
}

#[test]
fn renewals_without_an_answer_keep_the_lease_until_its_deadline() {
    let (t, t0) = (timing(), Instant::now());
    let mut lease = taken_after_predecessor(t0);
    for at in [1000, 1500] {
        let change = lease.answered(
            &t,
            &Ask::Renew("tok-1".into()),
            ms(t0, at),
            ms(t0, at + 499),
            1,
            Answer::Failed("timeout".into()),
        );
        assert_eq!(change, Change::None);
        assert!(lease.servable(ms(t0, at + 499)));
    }
    let (ask, change) = lease.ask(ms(t0, 2000), true);
    assert_eq!(change, Change::Lost(Loss::Expired));
    assert_eq!(ask, Some(Ask::Take), "taken anew, in a new term");
    lease.answered(
        &t,
        &Ask::Take,
        ms(t0, 2000),
        ms(t0, 2001),
        1,
        granted("tok-9"),
    );
    assert_eq!(lease.term(), 2);
}

#[test]
fn a_late_renewal_answer_after_the_deadline_does_not_revive_the_lease() {
    let (t, t0) = (timing(), Instant::now());
    let mut lease = taken_after_predecessor(t0);
    // Sent at 600 ms (deadline 2000 → 2100), but the answer arrives after the old deadline and
    // the lease was already ended by a tick.
    assert_eq!(lease.expire(ms(t0, 2000)), Change::Lost(Loss::Expired));
    let change = lease.answered(
        &t,
        &Ask::Renew("tok-1".into()),
        ms(t0, 600),
        ms(t0, 2050),
        1,
        granted("tok-2"),
    );
    assert_eq!(change, Change::None);
    assert!(!lease.servable(ms(t0, 2050)));
}

#[test]
fn a_lease_no_longer_wanted_is_ended_before_it_is_given_back() {
    let t0 = Instant::now();
    let mut lease = taken_after_predecessor(t0);
    let (ask, change) = lease.ask(ms(t0, 1000), false);
    assert_eq!(ask, Some(Ask::Give("tok-1".into())));
    assert_eq!(change, Change::Lost(Loss::Released));
    assert!(!lease.servable(ms(t0, 1000)));
    assert_eq!(lease.ask(ms(t0, 1500), false), (None, Change::None));
}

#[test]
fn a_lease_held_by_another_is_never_served() {
    let (t, t0) = (timing(), Instant::now());
    let mut lease = Lease::default();
    for i in 0..10u64 {
        let at = ms(t0, i * 500);
        let (ask, _) = lease.ask(at, true);
        assert_eq!(ask, Some(Ask::Take));
        lease.answered(&t, &Ask::Take, at, at, 1, held_by("kelp-a"));
        assert!(!lease.servable(at));
        assert!(!lease.held());
    }
    assert_eq!(lease.term(), 0);
}

#[test]
fn the_sentinel_lineage_moves_on_when_the_filer_may_have_forgotten_its_leases() {
    let mut s = Sentinel::default();
    assert_eq!(s.ask(), Ask::Take);
    assert!(
        !s.answered(&Ask::Take, granted("s1")),
        "a first take proves nothing"
    );
    let l = s.lineage();
    assert!(s.answered(&Ask::Renew("s1".into()), granted("s2")));
    assert_eq!(s.lineage(), l);
    assert_eq!(s.ask(), Ask::Renew("s2".into()));
    assert!(!s.answered(&Ask::Renew("s2".into()), Answer::Failed("timeout".into())));
    assert_eq!(s.lineage(), l, "no answer is not a restart");
    assert!(!s.answered(
        &Ask::Renew("s2".into()),
        Answer::Refused("lock: non-empty token on a new lock".into())
    ));
    assert_eq!(s.lineage(), l + 1);
    assert_eq!(s.ask(), Ask::Take);
}
