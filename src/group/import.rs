//! Import of the gateway's committed offsets (BACKEND.md "Migration"): the first OffsetFetch or
//! OffsetCommit of a group kelp has no offsets for waits while the shell reads the gateway's
//! offsets (`Output::Import`); found offsets are written to kelp's own store like a commit, then
//! the waiting calls run again in arrival order. A group is checked once per process: once kelp
//! has had offsets for it, or an import found none, it is never imported again. A failed import
//! answers the waiting calls with the error (retriable) and is tried again on the next call.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::persist::{Effect, OffsetEntry, Write, WriteId};
use super::rebalance::create_group;
use super::{CallMeta, Coordinator, Millis, Output, Request};

/// Checked groups remembered at most; the set starts over beyond it (an import is read-only and
/// only happens for a group without offsets, so forgetting costs one filer read).
const MAX_CHECKED: usize = 1_000_000;

/// A call waiting for the imports of some groups.
pub(crate) struct Parked {
    meta: CallMeta,
    request: Request,
    waiting: BTreeSet<String>,
    /// Groups whose import failed, with the error to answer for them.
    failed: HashMap<String, i16>,
}

#[derive(Default)]
pub(crate) struct Imports {
    /// Group → its import in progress (read, then write).
    running: HashMap<String, WriteId>,
    by_id: HashMap<WriteId, String>,
    checked: HashSet<String>,
    parked: Vec<Parked>,
    /// While a parked call is replayed: the groups whose import failed for it.
    failed: HashMap<String, i16>,
}

impl Imports {
    /// The group left this coordinator: whether it was checked no longer says anything.
    pub(crate) fn forget(&mut self, group: &str) {
        self.checked.remove(group);
    }

    pub(crate) fn mark_checked(&mut self, group: &str) {
        if self.checked.len() >= MAX_CHECKED {
            self.checked.clear();
        }
        self.checked.insert(group.to_string());
    }

    /// The error to answer for `group` while a call parked on its failed import is replayed.
    pub(crate) fn failed(&self, group: &str) -> Option<i16> {
        self.failed.get(group).copied()
    }

    pub(crate) fn is_running(&self, group: &str) -> bool {
        self.running.contains_key(group)
    }
}

/// Whether a call touching `group`'s offsets must wait for an import first.
pub(crate) fn needed(c: &Coordinator, group: &str) -> bool {
    c.persist.durable
        && !group.is_empty()
        && !c.imports.checked.contains(group)
        && !c.imports.failed.contains_key(group)
        && !c.offsets.has_offsets(group)
}

/// Parks the call until every group in `groups` has been imported, starting the imports that
/// are not running yet.
pub(crate) fn park(
    c: &mut Coordinator,
    meta: CallMeta,
    request: Request,
    groups: BTreeSet<String>,
    out: &mut Vec<Output>,
) {
    for group in &groups {
        if !c.imports.running.contains_key(group) {
            let id = c.persist.next_id();
            c.imports.running.insert(group.clone(), id);
            c.imports.by_id.insert(id, group.clone());
            out.push(Output::Import {
                id,
                group: group.clone(),
            });
        }
    }
    c.imports.parked.push(Parked {
        meta,
        request,
        waiting: groups,
        failed: HashMap::new(),
    });
}

/// The shell's answer to `Output::Import`.
pub(crate) fn imported(
    c: &mut Coordinator,
    now: Millis,
    id: WriteId,
    result: Result<Vec<OffsetEntry>, i16>,
    out: &mut Vec<Output>,
) {
    let Some(group) = c.imports.by_id.remove(&id) else {
        return;
    };
    match result {
        // A group released meanwhile gets no state here; its parked calls are refused on replay.
        Ok(_) if !c.owns(&group) => finish(c, now, &group, None, out),
        Ok(values) if !values.is_empty() && !c.offsets.has_offsets(&group) => {
            let (groups, _, mut cx) = c.parts(now, out);
            if !groups.contains_key(&group) {
                // The offsets need a group to belong to: a simple one, like a commit would make.
                create_group(groups, &mut cx, &group);
            }
            if let Some(g) = groups.get(&group) {
                let write = values.clone();
                cx.persist(g, move || Write::Offsets(write), Effect::Import { values });
            }
        }
        Ok(_) => finish(c, now, &group, None, out),
        Err(error) => finish(c, now, &group, Some(error), out),
    }
}

/// The write of imported offsets settled.
pub(crate) fn settled(
    c: &mut Coordinator,
    now: Millis,
    group: &str,
    same_group: bool,
    values: Vec<OffsetEntry>,
    outcome: Result<(), i16>,
    out: &mut Vec<Output>,
) {
    if outcome.is_ok() && same_group {
        for (topic, partition, offset) in values {
            c.offsets.commit(group, &topic, partition, offset);
        }
    }
    finish(c, now, group, outcome.err(), out);
}

/// The import of `group` is over: replay the calls that waited only on it (and imports done).
fn finish(
    c: &mut Coordinator,
    now: Millis,
    group: &str,
    error: Option<i16>,
    out: &mut Vec<Output>,
) {
    c.imports.running.remove(group);
    if error.is_none() {
        c.imports.mark_checked(group);
    }
    let mut ready = Vec::new();
    let mut still = Vec::new();
    for mut p in std::mem::take(&mut c.imports.parked) {
        if p.waiting.remove(group) {
            if let Some(e) = error {
                p.failed.insert(group.to_string(), e);
            }
        }
        if p.waiting.is_empty() {
            ready.push(p);
        } else {
            still.push(p);
        }
    }
    c.imports.parked = still;
    for p in ready {
        c.imports.failed = p.failed;
        c.dispatch(now, p.meta, p.request, out);
        c.imports.failed.clear();
    }
}
