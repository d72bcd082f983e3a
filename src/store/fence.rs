//! Ownership epochs in the filer (issue 15): every file kelp writes for a group carries the epoch
//! of the ownership that wrote it, and readers ignore what an earlier owner wrote after a later
//! one claimed the group, so a paused owner's late write can never roll back a commit or a
//! generation. Pure naming and selection rules; the I/O is `filer.rs`'s.
//!
//! - A **claim** is a marker file `epoch/<E>` (20 digits): the new owner takes E = highest
//!   marker + 1 and writes the marker *after* reading the group, naming in its **manifest** the
//!   record file and each topic's offsets file it read. From then on, the valid files are those of
//!   epoch E and those the manifest names; anything else of an older epoch (a write that landed
//!   after the claim) is ignored.
//! - Data files are written once under `<E>-<seq>` (20 digits each) and the highest valid one
//!   wins. Files named by a bare 20-digit seq (written before epochs existed) are epoch 0, and the
//!   old in-place `group.bin` is the record `(0, 0)`.
//! - With no marker at all (a group nobody claimed: stores of older kelps, tests), every file is
//!   valid, as before.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Digits of an epoch or a sequence number in a name (u64::MAX has 20).
pub(super) const DIGITS: usize = 20;
/// The legacy record file, overwritten in place by kelps before epochs.
pub(super) const LEGACY_RECORD: &str = "group.bin";

/// Where a data file was written from: ordered by epoch, then sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Stamp {
    pub epoch: u64,
    pub seq: u64,
}

impl Stamp {
    pub(super) fn name(self) -> String {
        format!("{:0w$}-{:0w$}", self.epoch, self.seq, w = DIGITS)
    }

    /// A data file's stamp: `<epoch>-<seq>`, or a legacy bare `<seq>` (epoch 0).
    pub(super) fn parse(name: &str) -> Option<Stamp> {
        fn digits(s: &str) -> Option<u64> {
            (s.len() == DIGITS && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?
        }
        match name.split_once('-') {
            Some((e, s)) => Some(Stamp {
                epoch: digits(e)?,
                seq: digits(s)?,
            }),
            None if name == LEGACY_RECORD => Some(Stamp { epoch: 0, seq: 0 }),
            None => Some(Stamp {
                epoch: 0,
                seq: digits(name)?,
            }),
        }
    }
}

/// An epoch marker's file name.
pub(super) fn marker_name(epoch: u64) -> String {
    format!("{epoch:0w$}", w = DIGITS)
}

pub(super) fn parse_marker(name: &str) -> Option<u64> {
    (name.len() == DIGITS && name.bytes().all(|b| b.is_ascii_digit())).then(|| name.parse().ok())?
}

/// What a claim read: the record file and each topic's offsets file (by the topic's encoded
/// directory name).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Manifest {
    pub owner: String,
    pub record: Option<String>,
    pub topics: BTreeMap<String, String>,
}

/// The epoch a group's files are read and written under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Claim {
    pub epoch: u64,
    pub manifest: Manifest,
}

/// Which of a group's files a name is.
#[derive(Clone, Copy, Debug)]
pub(super) enum Scope<'a> {
    Record,
    /// A topic's offsets, by its encoded directory name.
    Topic(&'a str),
}

impl Claim {
    pub(super) fn decode(epoch: u64, body: &[u8]) -> Result<Claim, String> {
        let manifest =
            serde_json::from_slice(body).map_err(|e| format!("epoch marker {epoch}: {e}"))?;
        Ok(Claim { epoch, manifest })
    }

    pub(super) fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(&self.manifest).unwrap_or_default()
    }

    /// Whether the file `name` of `scope`, stamped `stamp`, is part of the group's state.
    pub(super) fn admits(&self, scope: Scope<'_>, name: &str, stamp: Stamp) -> bool {
        if stamp.epoch >= self.epoch {
            return true;
        }
        let named = match scope {
            Scope::Record => self.manifest.record.as_deref(),
            Scope::Topic(t) => self.manifest.topics.get(t).map(String::as_str),
        };
        named == Some(name)
    }
}

/// The live file among `names` (the highest stamp the claim admits; every one without a claim),
/// and the others that are older than it or were ignored.
pub(super) fn pick<'n>(
    names: impl IntoIterator<Item = &'n str>,
    claim: Option<&Claim>,
    scope: Scope<'_>,
) -> Picked<'n> {
    let mut live: Option<(Stamp, &str)> = None;
    let mut older = Vec::new();
    let mut ignored = Vec::new();
    for name in names {
        let Some(stamp) = Stamp::parse(name) else {
            continue;
        };
        if claim.is_some_and(|c| !c.admits(scope, name, stamp)) {
            ignored.push(name);
            continue;
        }
        match live {
            Some((best, _)) if best >= stamp => older.push(name),
            _ => {
                if let Some((_, prev)) = live.replace((stamp, name)) {
                    older.push(prev);
                }
            }
        }
    }
    Picked {
        live: live.map(|(s, n)| (s, n)),
        older,
        ignored,
    }
}

pub(super) struct Picked<'n> {
    pub live: Option<(Stamp, &'n str)>,
    /// Superseded files (safe to delete).
    pub older: Vec<&'n str>,
    /// Files of an earlier owner written after the claim: never read.
    pub ignored: Vec<&'n str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(epoch: u64, record: Option<&str>, topics: &[(&str, &str)]) -> Claim {
        Claim {
            epoch,
            manifest: Manifest {
                owner: "kelp-a".into(),
                record: record.map(str::to_string),
                topics: topics
                    .iter()
                    .map(|(t, f)| (t.to_string(), f.to_string()))
                    .collect(),
            },
        }
    }

    fn n(epoch: u64, seq: u64) -> String {
        Stamp { epoch, seq }.name()
    }

    #[test]
    fn names_sort_by_epoch_then_sequence_and_legacy_names_are_epoch_zero() {
        assert_eq!(Stamp::parse(&n(3, 7)), Some(Stamp { epoch: 3, seq: 7 }));
        assert_eq!(
            Stamp::parse("00000000000000000042"),
            Some(Stamp { epoch: 0, seq: 42 })
        );
        assert_eq!(Stamp::parse("group.bin"), Some(Stamp { epoch: 0, seq: 0 }));
        assert_eq!(Stamp::parse("tmp-file"), None);
        assert!(n(1, 1) > n(0, u64::MAX), "names sort like stamps");
        assert_eq!(parse_marker(&marker_name(9)), Some(9));
    }

    #[test]
    fn without_a_claim_the_highest_file_wins() {
        let names = [n(0, 5), n(2, 1), n(1, 9)];
        let p = pick(names.iter().map(String::as_str), None, Scope::Topic("t"));
        assert_eq!(p.live.map(|l| l.0), Some(Stamp { epoch: 2, seq: 1 }));
        assert_eq!(p.older.len(), 2);
    }

    #[test]
    fn a_late_write_of_an_earlier_owner_is_ignored_after_a_claim() {
        // Owner 1 wrote (1, 10); owner 2 claimed, reading (1, 10); owner 1's paused write
        // (1, 11) landed after the claim; owner 2 has not written this topic yet.
        let c = claim(2, None, &[("t", &n(1, 10))]);
        let names = [n(1, 10), n(1, 11)];
        let p = pick(
            names.iter().map(String::as_str),
            Some(&c),
            Scope::Topic("t"),
        );
        assert_eq!(p.live.map(|l| l.1.to_string()), Some(n(1, 10)));
        assert_eq!(p.ignored, vec![n(1, 11).as_str()]);
        // Once owner 2 writes, its file wins whatever the late write's sequence number.
        let names = [n(1, 10), n(1, 99), n(2, 3)];
        let p = pick(
            names.iter().map(String::as_str),
            Some(&c),
            Scope::Topic("t"),
        );
        assert_eq!(p.live.map(|l| l.0), Some(Stamp { epoch: 2, seq: 3 }));
    }

    #[test]
    fn a_topic_the_claim_did_not_see_counts_only_from_the_claims_epoch() {
        let c = claim(4, Some(&n(3, 1)), &[]);
        let late = [n(3, 2)];
        let p = pick(late.iter().map(String::as_str), Some(&c), Scope::Topic("u"));
        assert!(
            p.live.is_none(),
            "a topic first written by a deposed owner stays invisible"
        );
        let both = [n(3, 1), n(3, 2)];
        let p = pick(both.iter().map(String::as_str), Some(&c), Scope::Record);
        assert_eq!(p.live.map(|l| l.1.to_string()), Some(n(3, 1)));
    }

    #[test]
    fn the_manifest_round_trips() {
        let c = claim(5, Some("group.bin"), &[("t%2E1", &n(4, 2))]);
        assert_eq!(Claim::decode(5, &c.encode()).unwrap(), c);
        assert!(Claim::decode(5, b"not json").is_err());
    }
}
