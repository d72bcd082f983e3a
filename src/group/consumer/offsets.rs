//! Offsets of consumer groups fenced by member epoch (Kafka's `ConsumerGroup.validateOffsetCommit`
//! and `validateOffsetFetch`): a commit or a fetch naming a member must come from a current member
//! at its current epoch. The verdicts only; the classic coordinator's offset store keeps the
//! offsets (one store for both kinds of group) and must call these for a consumer group's id.

use super::ConsumerGroups;

/// Kafka error codes of the fences.
pub mod code {
    pub const ILLEGAL_GENERATION: i16 = 22;
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    pub const UNSUPPORTED_VERSION: i16 = 35;
    pub const STALE_MEMBER_EPOCH: i16 = 113;
}

/// The verdict on an OffsetCommit or OffsetFetch for a group id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OffsetFence {
    /// Not a consumer group here: the classic rules apply.
    NotConsumerGroup,
    /// Accepted.
    Accept,
    /// Refused with this error for every partition (group-level on OffsetFetch v8+).
    Refuse(i16),
}

impl ConsumerGroups {
    /// OffsetCommit (not transactional) of `group` by `member_id` at `member_epoch`
    /// (`generation_id_or_member_epoch`), sent at `api_version`. An epoch below 0 on an empty
    /// group is an admin or manual commit and is accepted; otherwise the member must exist
    /// (UNKNOWN_MEMBER_ID), use OffsetCommit v9+ (UNSUPPORTED_VERSION) and be at its current epoch
    /// (STALE_MEMBER_EPOCH). A classic-protocol member commits at any version with its generation,
    /// which must be its member epoch (ILLEGAL_GENERATION; Kafka's `isClassicMember` path).
    pub fn fence_offset_commit(
        &self,
        group: &str,
        member_id: &str,
        member_epoch: i32,
        api_version: i16,
    ) -> OffsetFence {
        let Some(g) = self.groups.get(group) else {
            return OffsetFence::NotConsumerGroup;
        };
        if member_epoch < 0 && g.members.is_empty() {
            return OffsetFence::Accept;
        }
        let Some(m) = g.members.get(member_id) else {
            return OffsetFence::Refuse(code::UNKNOWN_MEMBER_ID);
        };
        if m.uses_classic_protocol() {
            // A classic member commits with its generation, which is its member epoch.
            return if member_epoch == m.member_epoch {
                OffsetFence::Accept
            } else {
                OffsetFence::Refuse(code::ILLEGAL_GENERATION)
            };
        }
        if api_version < 9 {
            return OffsetFence::Refuse(code::UNSUPPORTED_VERSION);
        }
        if member_epoch != m.member_epoch {
            return OffsetFence::Refuse(code::STALE_MEMBER_EPOCH);
        }
        OffsetFence::Accept
    }

    /// OffsetFetch (v9+ names a member; earlier versions send no member: `None`, -1) of `group`.
    /// Without a member id (null) and with a negative epoch (admin tools, older clients) it is
    /// accepted;
    /// otherwise the member must exist (UNKNOWN_MEMBER_ID) at its current epoch
    /// (STALE_MEMBER_EPOCH).
    pub fn fence_offset_fetch(
        &self,
        group: &str,
        member_id: Option<&str>,
        member_epoch: i32,
    ) -> OffsetFence {
        let Some(g) = self.groups.get(group) else {
            return OffsetFence::NotConsumerGroup;
        };
        let Some(member_id) = member_id else {
            return if member_epoch < 0 {
                OffsetFence::Accept
            } else {
                OffsetFence::Refuse(code::UNKNOWN_MEMBER_ID)
            };
        };
        let Some(m) = g.members.get(member_id) else {
            return OffsetFence::Refuse(code::UNKNOWN_MEMBER_ID);
        };
        if member_epoch != m.member_epoch {
            return OffsetFence::Refuse(if m.uses_classic_protocol() {
                code::ILLEGAL_GENERATION
            } else {
                code::STALE_MEMBER_EPOCH
            });
        }
        OffsetFence::Accept
    }
}
