//! The harness's store: what the coordinator's writes would leave in a real one, and what a
//! restarted coordinator would load from it.

use std::collections::{BTreeMap, BTreeSet};

use super::Harness;
use crate::group::consumer::ConsumerGroupRecord;
use crate::group::{
    CommittedOffset, Coordinator, GroupRecord, LoadedGroup, Persist, Write, WriteId,
};

/// What a store would hold after the writes the harness performed: records and offsets by group.
#[derive(Clone, Debug, Default)]
pub(crate) struct Disk {
    pub records: BTreeMap<String, GroupRecord>,
    /// Consumer groups' records (KIP-848); a group has one kind of record at a time.
    pub consumer_records: BTreeMap<String, ConsumerGroupRecord>,
    pub offsets: BTreeMap<String, BTreeMap<(String, i32), CommittedOffset>>,
}

impl Disk {
    pub fn apply(&mut self, p: &Persist) {
        match &p.write {
            Write::Offsets(values) => {
                let map = self.offsets.entry(p.group.clone()).or_default();
                for (t, part, o) in values {
                    map.insert((t.clone(), *part), o.clone());
                }
            }
            Write::DeleteOffsets(keys) => {
                if let Some(map) = self.offsets.get_mut(&p.group) {
                    for k in keys {
                        map.remove(k);
                    }
                }
            }
            Write::Record(r) => {
                self.consumer_records.remove(&p.group);
                self.records.insert(p.group.clone(), r.clone());
            }
            Write::ConsumerRecord(r) => {
                self.records.remove(&p.group);
                self.consumer_records
                    .insert(p.group.clone(), r.as_ref().clone());
            }
            Write::DeleteGroup => {
                self.records.remove(&p.group);
                self.consumer_records.remove(&p.group);
                self.offsets.remove(&p.group);
            }
        }
    }

    /// Everything on the disk, as the shell would load it.
    pub fn loaded(&self) -> Vec<LoadedGroup> {
        let ids: BTreeSet<&String> = self
            .records
            .keys()
            .chain(self.consumer_records.keys())
            .chain(self.offsets.keys())
            .collect();
        ids.into_iter()
            .map(|g| LoadedGroup {
                group: g.clone(),
                record: self.records.get(g).cloned(),
                consumer: self.consumer_records.get(g).cloned().map(Box::new),
                offsets: self
                    .offsets
                    .get(g)
                    .into_iter()
                    .flatten()
                    .map(|((t, p), o)| (t.clone(), *p, o.clone()))
                    .collect(),
            })
            .collect()
    }
}

/// Restarts, held writes and held imports.
impl Harness {
    /// A fresh coordinator (a restarted kelp) loaded from this harness's disk at the current time.
    pub fn restart(&mut self) {
        self.c = Coordinator::with_seed(self.c.config.clone(), 4242);
        self.c.begin_loading();
        let groups = self.disk.loaded();
        let mut out = Vec::new();
        self.c.load(self.now, groups, &mut out);
        self.absorb(out);
    }

    /// Performs held writes: `outcome` for the first `n` (in emission order), the rest stay held.
    pub fn settle(&mut self, n: usize, outcome: Result<(), i16>) {
        let n = n.min(self.held.len());
        let settled: Vec<Persist> = self.held.drain(..n).collect();
        for p in settled {
            self.settle_one(p, outcome);
        }
    }

    /// Performs one held write (by id) with `outcome`.
    pub fn settle_id(&mut self, id: WriteId, outcome: Result<(), i16>) {
        let Some(i) = self.held.iter().position(|p| p.id == id) else {
            panic!("write {id} is not held");
        };
        let p = self.held.remove(i);
        self.settle_one(p, outcome);
    }

    fn settle_one(&mut self, p: Persist, outcome: Result<(), i16>) {
        if outcome.is_ok() {
            self.disk.apply(&p);
        }
        let mut out = Vec::new();
        self.c.persisted(self.now, p.id, outcome, &mut out);
        self.absorb(out);
    }

    /// Answers held imports with what `gateway` holds (or `error`).
    pub fn settle_imports(&mut self, error: Option<i16>) {
        for (id, group) in std::mem::take(&mut self.held_imports) {
            let result = match error {
                Some(e) => Err(e),
                None => Ok(self.gateway.get(&group).cloned().unwrap_or_default()),
            };
            let mut out = Vec::new();
            self.c.imported(self.now, id, result, &mut out);
            self.absorb(out);
        }
    }
}
