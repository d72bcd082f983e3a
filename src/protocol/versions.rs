//! The one version table: for every API kelp knows, how it is handled and which versions kelp itself
//! can serve or forward. ApiVersions answers are built from this table and the backend's ranges.

use std::collections::BTreeMap;

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};
use kafka_protocol::protocol::VersionRange;

/// How a request of a given API is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handling {
    /// Forwarded to the backend byte for byte; the response comes back byte for byte.
    Forward,
    /// Forwarded byte for byte; the response is decoded and rewritten to name kelp.
    ForwardRewrite,
    /// Answered by kelp itself, whatever the group mode (ApiVersions, FindCoordinator).
    Answer,
    /// A group API: served by the local coordinator, or passed through for a `passthrough` group.
    Group,
}

const fn range(min: i16, max: i16) -> VersionRange {
    VersionRange { min, max }
}

/// How kelp handles `api` and the versions kelp can handle, or `None` when kelp neither serves nor
/// forwards it (it is then never advertised and a request for it closes the connection).
pub fn kelp_range(api: ApiKey) -> Option<(Handling, VersionRange)> {
    use ApiKey::*;
    use Handling::*;
    let entry = match api {
        // Answered by kelp.
        ApiVersions => (Answer, range(0, 4)),
        FindCoordinator => (Answer, range(0, 6)),
        // The classic group APIs (GROUP_SEMANTICS.md §1.1), at the versions kafka-protocol decodes.
        JoinGroup => (Group, range(0, 9)),
        SyncGroup => (Group, range(0, 5)),
        Heartbeat => (Group, range(0, 4)),
        LeaveGroup => (Group, range(0, 5)),
        OffsetCommit => (Group, range(2, 9)),
        OffsetFetch => (Group, range(1, 9)),
        DescribeGroups => (Group, range(0, 5)),
        ListGroups => (Group, range(0, 5)),
        DeleteGroups => (Group, range(0, 2)),
        OffsetDelete => (Group, range(0, 0)),
        // Kafka 4's consumer group protocol (KIP-848): served only by kelp's coordinator (the
        // gateway has none), so advertised only while no group may be passed through.
        ConsumerGroupHeartbeat => (Group, range(0, 1)),
        ConsumerGroupDescribe => (Group, range(0, 1)),
        // Forwarded, response rewritten to kelp's address and node id. Metadata above the
        // gateway's versions is answered by kelp from the gateway's highest (`topics::metadata`).
        Metadata | DescribeCluster => (ForwardRewrite, api.valid_versions()),
        // Forwarded untouched: nothing in these names a broker address or a group coordinator.
        Produce
        | Fetch
        | ListOffsets
        | CreateTopics
        | DeleteTopics
        | DeleteRecords
        | InitProducerId
        | OffsetForLeaderEpoch
        | DescribeConfigs
        | AlterConfigs
        | IncrementalAlterConfigs
        | CreatePartitions => (Forward, api.valid_versions()),
        _ => return None,
    };
    Some(entry)
}

/// What the backend advertised: api key → version range.
pub type BackendRanges = BTreeMap<i16, VersionRange>;

/// The ranges an ApiVersions answer lists.
pub fn ranges_of(response: &ApiVersionsResponse) -> BackendRanges {
    response
        .api_keys
        .iter()
        .map(|k| {
            let range = VersionRange {
                min: k.min_version,
                max: k.max_version,
            };
            (k.api_key, range)
        })
        .collect()
}

/// Group API entries of `list` narrowed to what every one of `peers` serves (their ApiVersions
/// answers under their own rules): with several kelps, a group's request may be served by any of
/// them, as the owner's rules decide, and a request passed through reaches the gateway unchanged.
/// A group API one peer does not serve is not advertised. Other entries are left alone.
pub fn cap_group_apis(list: Vec<ApiVersion>, peers: &[BackendRanges]) -> Vec<ApiVersion> {
    list.into_iter()
        .filter_map(|mut entry| {
            let group = ApiKey::try_from(entry.api_key)
                .ok()
                .and_then(kelp_range)
                .is_some_and(|(h, _)| h == Handling::Group);
            if !group {
                return Some(entry);
            }
            for ranges in peers {
                let theirs = ranges.get(&entry.api_key)?;
                entry.min_version = entry.min_version.max(theirs.min);
                entry.max_version = entry.max_version.min(theirs.max);
            }
            (entry.min_version <= entry.max_version).then_some(entry)
        })
        .collect()
}

/// The ApiVersions entries kelp advertises.
///
/// Forwarded APIs: `backend ∩ kelp`; Metadata from the backend's lowest version to kelp's
/// highest (kelp answers the versions above the backend's, `topics::metadata`). Group APIs: kelp's own range, intersected with the backend's when
/// some group may be passed through (`passthrough_possible`), since such a request reaches the gateway
/// unchanged. An empty intersection is not advertised (so the KIP-848 APIs, which the gateway
/// lacks, are advertised only while every group is local).
pub fn advertised(backend: &BackendRanges, passthrough_possible: bool) -> Vec<ApiVersion> {
    ApiKey::iter()
        .filter_map(|api| {
            let (handling, ours) = kelp_range(api)?;
            let backend_range = backend.get(&(api as i16));
            let range = match handling {
                Handling::Answer => ours,
                // Any gateway Metadata version gives kelp every version above it (topic ids).
                Handling::ForwardRewrite if api == ApiKey::Metadata => VersionRange {
                    min: ours.min.max(backend_range?.min),
                    max: ours.max,
                },
                Handling::Group if !passthrough_possible => ours,
                Handling::Group | Handling::Forward | Handling::ForwardRewrite => {
                    ours.intersect(backend_range?)
                }
            };
            (!range.is_empty()).then(|| {
                ApiVersion::default()
                    .with_api_key(api as i16)
                    .with_min_version(range.min)
                    .with_max_version(range.max)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What gateway 4.48 advertises (BACKEND.md).
    pub(crate) fn gateway_448() -> BackendRanges {
        [
            (0, 0, 7),
            (1, 0, 7),
            (2, 0, 2),
            (3, 0, 7),
            (8, 0, 2),
            (9, 0, 5),
            (10, 0, 3),
            (11, 0, 6),
            (12, 0, 4),
            (13, 0, 4),
            (14, 0, 5),
            (15, 0, 5),
            (16, 0, 4),
            (18, 0, 4),
            (19, 0, 5),
            (20, 0, 4),
            (22, 0, 4),
            (32, 0, 4),
            (60, 0, 1),
        ]
        .into_iter()
        .map(|(k, min, max)| (k, range(min, max)))
        .collect()
    }

    fn find(list: &[ApiVersion], api: ApiKey) -> Option<(i16, i16)> {
        list.iter()
            .find(|v| v.api_key == api as i16)
            .map(|v| (v.min_version, v.max_version))
    }

    #[test]
    fn forwarded_apis_are_intersected_with_the_backend() {
        let list = advertised(&gateway_448(), false);
        assert_eq!(find(&list, ApiKey::Produce), Some((3, 7)));
        assert_eq!(find(&list, ApiKey::Fetch), Some((4, 7)));
        // Metadata v8–13 are kelp's own (answered from v7 with topic ids).
        assert_eq!(find(&list, ApiKey::Metadata), Some((0, 13)));
        assert_eq!(find(&list, ApiKey::DescribeCluster), Some((0, 1)));
        // Not advertised by the backend → not advertised by kelp.
        assert_eq!(find(&list, ApiKey::DeleteRecords), None);
    }

    #[test]
    fn local_group_apis_use_kelps_ranges() {
        let list = advertised(&gateway_448(), false);
        assert_eq!(find(&list, ApiKey::JoinGroup), Some((0, 9)));
        assert_eq!(find(&list, ApiKey::LeaveGroup), Some((0, 5)));
        assert_eq!(find(&list, ApiKey::OffsetCommit), Some((2, 9)));
        assert_eq!(find(&list, ApiKey::FindCoordinator), Some((0, 6)));
        assert_eq!(find(&list, ApiKey::ApiVersions), Some((0, 4)));
        assert_eq!(find(&list, ApiKey::DeleteGroups), Some((0, 2)));
    }

    #[test]
    fn passthrough_caps_group_apis_at_the_backend() {
        let list = advertised(&gateway_448(), true);
        assert_eq!(find(&list, ApiKey::JoinGroup), Some((0, 6)));
        assert_eq!(find(&list, ApiKey::OffsetCommit), Some((2, 2)));
        assert_eq!(find(&list, ApiKey::FindCoordinator), Some((0, 6)));
        // The gateway has no DeleteGroups.
        assert_eq!(find(&list, ApiKey::DeleteGroups), None);
    }

    #[test]
    fn group_apis_are_capped_by_every_peer() {
        let ours = advertised(&gateway_448(), false);
        let join = |list: &[ApiVersion]| {
            list.iter()
                .find(|a| a.api_key == ApiKey::JoinGroup as i16)
                .map(|a| (a.min_version, a.max_version))
        };
        // What a peer's probe keeps of its ApiVersions answer.
        let answer =
            |list: Vec<ApiVersion>| ranges_of(&ApiVersionsResponse::default().with_api_keys(list));
        let full = answer(ours.clone());
        let passthrough = answer(advertised(&gateway_448(), true));
        // Peers all local: nothing changes.
        assert_eq!(
            cap_group_apis(ours.clone(), &[full.clone(), full.clone()]),
            ours
        );
        // One peer may pass groups through: group APIs at the gateway's versions, and the ones
        // the gateway lacks (DeleteGroups) not at all; forwarded APIs untouched.
        let capped = cap_group_apis(ours.clone(), &[full, passthrough]);
        assert_eq!(join(&capped), join(&advertised(&gateway_448(), true)));
        assert!(capped
            .iter()
            .all(|a| a.api_key != ApiKey::DeleteGroups as i16));
        let produce = |list: &[ApiVersion]| {
            list.iter()
                .find(|a| a.api_key == ApiKey::Produce as i16)
                .cloned()
        };
        assert_eq!(produce(&capped), produce(&ours));
        // No peers: what this kelp advertises.
        assert_eq!(cap_group_apis(ours.clone(), &[]), ours);
    }

    #[test]
    fn kip_848_apis_are_advertised_only_while_every_group_is_local() {
        let list = advertised(&gateway_448(), false);
        assert_eq!(find(&list, ApiKey::ConsumerGroupHeartbeat), Some((0, 1)));
        assert_eq!(find(&list, ApiKey::ConsumerGroupDescribe), Some((0, 1)));
        // The gateway has neither: a group that may be passed through cannot use them.
        let list = advertised(&gateway_448(), true);
        assert_eq!(find(&list, ApiKey::ConsumerGroupHeartbeat), None);
        assert_eq!(find(&list, ApiKey::ConsumerGroupDescribe), None);
    }

    #[test]
    fn metadata_is_advertised_only_with_a_gateway_that_serves_it() {
        let mut backend = gateway_448();
        backend.remove(&(ApiKey::Metadata as i16));
        let list = advertised(&backend, false);
        assert_eq!(find(&list, ApiKey::Metadata), None);
    }
}
