//! What the KIP-848 tests check on the members' own timelines: each member prints every change of
//! its assignment stamped with its wall clock (tests/peers/member.py `--stamp`), so the order of
//! events across members is known without the test's report lag. From those timelines: partitions
//! owned by two live members at any instant (or at given sample times), members that dropped to
//! zero partitions after their first assignment, kept partitions that were taken away for a while.
//! It only measures; the tests assert.

use std::collections::BTreeMap;

/// One member's assignment over time (its own clock, unix seconds) and when it stopped existing
/// (killed or closed; it owns nothing from then on).
#[derive(Debug, Clone)]
pub struct Life {
    pub name: String,
    pub timeline: Vec<(f64, Vec<i32>)>,
    pub gone_at: Option<f64>,
}

impl Life {
    /// What the member owned at time `t` (nothing before its first assignment or once gone).
    pub fn owned_at(&self, t: f64) -> Vec<i32> {
        if self.gone_at.is_some_and(|g| t >= g) {
            return Vec::new();
        }
        self.timeline
            .iter()
            .take_while(|(at, _)| *at <= t)
            .last()
            .map(|(_, a)| a.clone())
            .unwrap_or_default()
    }
}

/// One instant at which a partition had two or more live owners.
#[derive(Debug, Clone, PartialEq)]
pub struct Double {
    pub at: f64,
    pub partition: i32,
    pub owners: Vec<String>,
}

/// Partitions owned twice at `t`.
fn doubles_at(lives: &[Life], t: f64) -> Vec<Double> {
    let mut owners: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    for l in lives {
        for p in l.owned_at(t) {
            owners.entry(p).or_default().push(l.name.clone());
        }
    }
    owners
        .into_iter()
        .filter(|(_, o)| o.len() > 1)
        .map(|(partition, owners)| Double {
            at: t,
            partition,
            owners,
        })
        .collect()
}

/// Every instant in `[from, to]` at which some partition had two live owners: checked at `from`
/// and after every assignment change (the only instants at which ownership changes), so nothing
/// between samples can hide.
pub fn double_owned(lives: &[Life], from: f64, to: f64) -> Vec<Double> {
    let mut times: Vec<f64> = lives
        .iter()
        .flat_map(|l| l.timeline.iter().map(|(t, _)| *t).chain(l.gone_at))
        .filter(|t| *t > from && *t <= to)
        .collect();
    times.push(from);
    times.sort_by(f64::total_cmp);
    times.dedup();
    times
        .into_iter()
        .flat_map(|t| doubles_at(lives, t))
        .collect()
}

/// Partitions owned twice at any of the sample times.
pub fn double_owned_at_samples(lives: &[Life], samples: &[f64]) -> Vec<Double> {
    samples.iter().flat_map(|t| doubles_at(lives, *t)).collect()
}

/// When (if ever) in `[from, to]` the member owned nothing after it had owned something (before
/// it was gone): the first such instant.
pub fn dropped_to_zero(life: &Life, from: f64, to: f64) -> Option<f64> {
    let mut had = life
        .timeline
        .iter()
        .any(|(t, a)| *t <= from && !a.is_empty());
    for (t, a) in &life.timeline {
        if life.gone_at.is_some_and(|g| *t >= g) || *t > to {
            break;
        }
        if a.is_empty() && had && *t >= from {
            return Some(*t);
        }
        had |= !a.is_empty();
    }
    None
}

/// The partitions the member owned at `from` and still owns at `to` (what it kept), and for how
/// long in `[from, to]` it was without some of them.
pub fn kept_and_paused(life: &Life, from: f64, to: f64) -> (Vec<i32>, f64) {
    let before = life.owned_at(from);
    let after = life.owned_at(to);
    let kept: Vec<i32> = before
        .iter()
        .filter(|p| after.contains(p))
        .copied()
        .collect();
    if kept.is_empty() {
        return (kept, 0.0);
    }
    let mut paused = 0.0;
    let mut since: Option<f64> = None;
    let changes = life
        .timeline
        .iter()
        .filter(|(t, _)| *t > from && *t <= to)
        .map(|(t, a)| (*t, a.clone()));
    for (t, a) in changes {
        let whole = kept.iter().all(|p| a.contains(p));
        match (whole, since) {
            (false, None) => since = Some(t),
            (true, Some(s)) => {
                paused += t - s;
                since = None;
            }
            _ => {}
        }
    }
    if let Some(s) = since {
        paused += to - s;
    }
    (kept, paused)
}

#[test]
fn timelines_find_double_ownership_drops_and_pauses() {
    let life = |name: &str, tl: &[(f64, &[i32])], gone: Option<f64>| Life {
        name: name.into(),
        timeline: tl.iter().map(|(t, a)| (*t, a.to_vec())).collect(),
        gone_at: gone,
    };
    // a owns 0,1 then gives 1 up at 2.0; b takes 1 at 1.5 (too early) and a is gone at 5.0,
    // c takes 0 at 4.0 (before a is gone: double), eager d drops to zero and back.
    let a = life("a", &[(1.0, &[0, 1]), (2.0, &[0])], Some(5.0));
    let b = life("b", &[(1.5, &[1])], None);
    let c = life("c", &[(4.0, &[0])], None);
    let d = life("d", &[(1.0, &[2, 3]), (3.0, &[]), (3.5, &[2])], None);
    let lives = [a.clone(), b, c, d.clone()];
    let dd = double_owned(&lives, 0.0, 10.0);
    assert_eq!(
        dd,
        vec![
            Double {
                at: 1.5,
                partition: 1,
                owners: vec!["a".into(), "b".into()]
            },
            Double {
                at: 4.0,
                partition: 0,
                owners: vec!["a".into(), "c".into()]
            },
        ]
    );
    assert_eq!(double_owned(&lives, 5.0, 10.0), vec![]);
    assert_eq!(double_owned_at_samples(&lives, &[1.2, 1.7, 4.5]).len(), 2);
    assert_eq!(a.owned_at(0.5), Vec::<i32>::new());
    assert_eq!(a.owned_at(6.0), Vec::<i32>::new());
    assert_eq!(dropped_to_zero(&d, 0.0, 10.0), Some(3.0));
    assert_eq!(dropped_to_zero(&d, 3.2, 10.0), None);
    assert_eq!(dropped_to_zero(&a, 0.0, 10.0), None, "gone is not a drop");
    // d kept 2 from 1.0 to 10.0 and was without it from 3.0 to 3.5.
    assert_eq!(kept_and_paused(&d, 2.0, 10.0), (vec![2], 0.5));
    assert_eq!(kept_and_paused(&a, 1.5, 4.0), (vec![0], 0.0));
}
