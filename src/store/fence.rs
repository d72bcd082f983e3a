//! Ownership epochs in the filer (issue 15): every file kelp writes for a group carries the epoch
//! of the ownership that wrote it, and readers ignore what an earlier owner wrote after a later
//! one claimed the group, so a paused owner's late write can never roll back a commit or a
//! generation. Pure naming and selection rules; the I/O is `filer.rs`'s.
//!
//! - A **claim** is a marker file `epoch/<E>` (20 digits). The new owner reads the group under the
//!   latest marker, takes E above every epoch it saw (markers and file names), copies what it read
//!   into files of epoch E, then writes the marker. From then on only files of epoch E are the
//!   group's state: anything an earlier owner writes (or deletes) afterwards is never read, and a
//!   claim that died before its marker left files no later claim admits.
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
    digits(name)
}

/// An epoch or a sequence number written as exactly `DIGITS` ASCII digits.
fn digits(s: &str) -> Option<u64> {
    (s.len() == DIGITS && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?
}

/// What an epoch marker says besides its epoch: who claimed, and the files the claim copied
/// (by the topic's encoded directory name), for people reading the filer.
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

impl Claim {
    pub(super) fn decode(epoch: u64, body: &[u8]) -> Result<Claim, String> {
        let manifest =
            serde_json::from_slice(body).map_err(|e| format!("epoch marker {epoch}: {e}"))?;
        Ok(Claim { epoch, manifest })
    }

    pub(super) fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(&self.manifest).unwrap_or_default()
    }

    /// Whether a file stamped `stamp` is part of the group's state: only the claim's epoch is.
    pub(super) fn admits(&self, stamp: Stamp) -> bool {
        stamp.epoch == self.epoch
    }
}

/// The live file among `names` (the highest stamp the claim admits; every one without a claim),
/// the others that are older than it or were ignored, and the highest epoch named.
pub(super) fn pick<'n>(
    names: impl IntoIterator<Item = &'n str>,
    claim: Option<&Claim>,
) -> Picked<'n> {
    let mut live: Option<(Stamp, &str)> = None;
    let mut older = Vec::new();
    let mut ignored = Vec::new();
    let mut later = Vec::new();
    let mut top_epoch = 0;
    for name in names {
        let Some(stamp) = Stamp::parse(name) else {
            continue;
        };
        top_epoch = top_epoch.max(stamp.epoch);
        if claim.is_some_and(|c| stamp.epoch > c.epoch) {
            later.push(name);
            continue;
        }
        if claim.is_some_and(|c| !c.admits(stamp)) {
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
        live,
        older,
        ignored,
        later,
        top_epoch,
    }
}

pub(super) struct Picked<'n> {
    pub live: Option<(Stamp, &'n str)>,
    /// Superseded files (safe to delete).
    pub older: Vec<&'n str>,
    /// Files of an earlier epoch than the claim's: never read again (safe to delete).
    pub ignored: Vec<&'n str>,
    /// Files of a later epoch than the claim's: a later owner's, or a claim that died before its
    /// marker. Not read under this claim, and never deleted by a reader holding it (it may be a
    /// deposed owner).
    pub later: Vec<&'n str>,
    /// The highest epoch among the names (a new claim goes above it).
    pub top_epoch: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(epoch: u64) -> Claim {
        Claim {
            epoch,
            manifest: Manifest {
                owner: "kelp-a".into(),
                ..Manifest::default()
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
        let p = pick(names.iter().map(String::as_str), None);
        assert_eq!(p.live.map(|l| l.0), Some(Stamp { epoch: 2, seq: 1 }));
        assert_eq!(p.older.len(), 2);
        assert_eq!(p.top_epoch, 2);
    }

    #[test]
    fn under_a_claim_only_its_epoch_counts() {
        // Owner 2 copied (1, 10) into (2, 11); owner 1's paused writes (1, 12) and (1, 99)
        // landed after the claim; a claim of epoch 3 died before its marker, leaving (3, 13).
        let c = claim(2);
        let names = [n(1, 10), n(2, 11), n(1, 12), n(1, 99), n(3, 13)];
        let p = pick(names.iter().map(String::as_str), Some(&c));
        assert_eq!(p.live.map(|l| l.1.to_string()), Some(n(2, 11)));
        assert_eq!(p.ignored.len(), 3);
        assert_eq!(
            p.later,
            vec![n(3, 13).as_str()],
            "never deleted by this reader"
        );
        assert_eq!(p.top_epoch, 3, "the next claim goes above the dead one");
        // A topic only a deposed owner wrote stays invisible.
        let late = [n(1, 14)];
        assert!(pick(late.iter().map(String::as_str), Some(&c))
            .live
            .is_none());
    }

    #[test]
    fn the_manifest_round_trips() {
        let mut c = claim(5);
        c.manifest.record = Some(n(5, 1));
        c.manifest.topics.insert("t%2E1".into(), n(5, 2));
        assert_eq!(Claim::decode(5, &c.encode()).unwrap(), c);
        assert!(Claim::decode(5, b"not json").is_err());
    }
}
