//! Server-side assignors of consumer groups (Kafka's `ConsumerGroupPartitionAssignor`): `uniform`
//! (the default: balanced and sticky) and `range` (co-partitioned ranges). Given every member's
//! subscribed topic ids and current target, they compute the next target. Pure functions of their
//! input; they must not read the group or emit anything.

mod range;
mod uniform;

use std::collections::{BTreeSet, HashMap};

use uuid::Uuid;

use super::member::Assignment;

/// One member as an assignor sees it.
#[derive(Clone, Debug)]
pub struct MemberSpec<'a> {
    pub id: &'a str,
    pub instance_id: Option<&'a str>,
    /// Subscribed topics that exist (ids).
    pub topics: BTreeSet<Uuid>,
    /// The member's target assignment so far (stickiness starts from it).
    pub current: &'a Assignment,
}

/// The server-side assignors kelp offers, by Kafka's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Assignor {
    Uniform,
    Range,
}

impl Assignor {
    pub const ALL: [Assignor; 2] = [Assignor::Uniform, Assignor::Range];

    pub fn name(self) -> &'static str {
        match self {
            Assignor::Uniform => "uniform",
            Assignor::Range => "range",
        }
    }

    pub fn by_name(name: &str) -> Option<Assignor> {
        Assignor::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The target assignment of every member. `partitions` gives a subscribed topic's partition
    /// count; a topic it does not know is not assigned. Every partition of a subscribed topic
    /// goes to exactly one member subscribed to it.
    pub fn assign(
        self,
        members: &[MemberSpec<'_>],
        partitions: &dyn Fn(Uuid) -> Option<i32>,
    ) -> HashMap<String, Assignment> {
        if members.is_empty() {
            return HashMap::new();
        }
        match self {
            Assignor::Uniform => uniform::assign(members, partitions),
            Assignor::Range => range::assign(members, partitions),
        }
    }
}

/// Whether every member subscribes to the same topics (Kafka's `SubscriptionType.HOMOGENEOUS`).
pub fn is_homogeneous(members: &[MemberSpec<'_>]) -> bool {
    members.windows(2).all(|w| w[0].topics == w[1].topics)
}

#[cfg(test)]
mod tests;
