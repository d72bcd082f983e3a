//! Per request: answer it in kelp, forward it to the backend, or hand it to the group coordinator.
//! This is the one place that says what kelp serves itself and what it forwards. The header decides
//! for everything but group requests; those are decoded, and the mode rules in effect decide per
//! group id (`group_route`).

use kafka_protocol::messages::ApiKey;

use crate::config::GroupMode;
use crate::group::Request;
use crate::modes::Snapshot;
use crate::protocol::{kelp_range, FrameError, Handling, Peek};

/// Where one request goes.
/// Which listener a request came in on: a client's (routed to the group's owner) or another
/// kelp's (served here or refused, never forwarded again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Client,
    Peer,
}

impl Origin {
    pub fn label(self) -> &'static str {
        match self {
            Origin::Client => "client",
            Origin::Peer => "peer",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// To the backend byte for byte; the response back byte for byte.
    Forward,
    /// To the backend byte for byte; the response rewritten to name kelp.
    ForwardRewrite,
    /// ApiVersions, answered by kelp.
    ApiVersions,
    /// FindCoordinator, answered by kelp with itself.
    FindCoordinator,
    /// A group request: decoded, then `group_route` decides by group id.
    Group,
}

/// Decides the route of a request from its header alone.
///
/// ApiVersions at any version is routed (an unsupported version is answered with error 35); other
/// requests kelp decodes must be within kelp's range, or the connection is closed.
pub fn route(peek: &Peek) -> Result<Route, FrameError> {
    let (handling, range) =
        kelp_range(peek.api_key).ok_or(FrameError::UnsupportedApi(peek.api_key))?;
    let route = match handling {
        Handling::Answer if peek.api_key == ApiKey::ApiVersions => return Ok(Route::ApiVersions),
        Handling::Answer => Route::FindCoordinator,
        Handling::Forward => return Ok(Route::Forward),
        Handling::ForwardRewrite => Route::ForwardRewrite,
        Handling::Group => Route::Group,
    };
    if peek.api_version < range.min || peek.api_version > range.max {
        return Err(FrameError::UnsupportedVersion {
            api: peek.api_key,
            version: peek.api_version,
        });
    }
    Ok(route)
}

/// Where one decoded group request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupRoute {
    /// kelp's coordinator answers it.
    Local,
    /// Forwarded untouched to the gateway's coordinator.
    Passthrough,
    /// A batch naming groups of both modes (DescribeGroups, DeleteGroups, OffsetFetch v8+): kelp
    /// answers its own groups and NOT_COORDINATOR for each group at the gateway (`true` here, in
    /// request order). Clients retry those alone, and a batch of passthrough groups only goes to
    /// the gateway.
    Split(Vec<bool>),
    /// ListGroups while groups of both modes may exist: forwarded, and the gateway's list merged
    /// with kelp's, each group listed by the coordinator its current mode names.
    ListBoth,
}

/// The group ids a group request names, in request order (ListGroups names none).
pub use crate::group::named_groups as group_ids;

/// Decides where a decoded group request goes under the rules in effect.
pub fn group_route(request: &Request, rules: &Snapshot) -> GroupRoute {
    if let Request::ListGroups(_) = request {
        return match (rules.local_possible, rules.passthrough_possible) {
            (true, true) => GroupRoute::ListBoth,
            (false, true) => GroupRoute::Passthrough,
            _ => GroupRoute::Local,
        };
    }
    if !rules.passthrough_possible {
        return GroupRoute::Local;
    }
    let modes: Vec<bool> = group_ids(request)
        .into_iter()
        .map(|g| rules.mode_of(g) == GroupMode::Passthrough)
        .collect();
    if modes.is_empty() || modes.iter().all(|p| !p) {
        GroupRoute::Local
    } else if modes.iter().all(|p| *p) {
        GroupRoute::Passthrough
    } else {
        GroupRoute::Split(modes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modes::{Glob, Rule, Rules};
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
    use kafka_protocol::messages::{
        DeleteGroupsRequest, DescribeGroupsRequest, GroupId, HeartbeatRequest, ListGroupsRequest,
        OffsetFetchRequest,
    };
    use kafka_protocol::protocol::StrBytes;

    fn peek(api_key: ApiKey, api_version: i16) -> Peek {
        Peek {
            api_key,
            api_version,
            correlation_id: 1,
        }
    }

    #[test]
    fn data_apis_are_forwarded() {
        assert_eq!(route(&peek(ApiKey::Produce, 7)), Ok(Route::Forward));
        assert_eq!(route(&peek(ApiKey::Fetch, 7)), Ok(Route::Forward));
        assert_eq!(route(&peek(ApiKey::Metadata, 7)), Ok(Route::ForwardRewrite));
    }

    #[test]
    fn group_apis_are_decided_per_group() {
        assert_eq!(route(&peek(ApiKey::JoinGroup, 9)), Ok(Route::Group));
        assert_eq!(route(&peek(ApiKey::ListGroups, 4)), Ok(Route::Group));
        assert_eq!(
            route(&peek(ApiKey::ConsumerGroupHeartbeat, 1)),
            Ok(Route::Group)
        );
        assert_eq!(
            route(&peek(ApiKey::FindCoordinator, 4)),
            Ok(Route::FindCoordinator)
        );
    }

    #[test]
    fn unserved_apis_and_versions_are_refused() {
        assert!(matches!(
            route(&peek(ApiKey::ShareGroupHeartbeat, 0)),
            Err(FrameError::UnsupportedApi(_))
        ));
        assert!(matches!(
            route(&peek(ApiKey::ConsumerGroupHeartbeat, 2)),
            Err(FrameError::UnsupportedVersion { .. })
        ));
        assert!(matches!(
            route(&peek(ApiKey::JoinGroup, 10)),
            Err(FrameError::UnsupportedVersion { .. })
        ));
        assert_eq!(
            route(&peek(ApiKey::ApiVersions, 99)),
            Ok(Route::ApiVersions)
        );
    }

    fn rules(default_mode: GroupMode, rules: &[(&str, GroupMode)]) -> Snapshot {
        let rules = Rules {
            default_mode,
            rules: rules
                .iter()
                .map(|(p, mode)| Rule {
                    pattern: Glob::new(p).unwrap(),
                    mode: *mode,
                })
                .collect(),
        };
        Snapshot::for_rules(rules)
    }

    fn gid(g: &str) -> GroupId {
        GroupId(StrBytes::from_string(g.to_string()))
    }

    fn heartbeat(group: &str) -> Request {
        Request::Heartbeat(HeartbeatRequest::default().with_group_id(gid(group)))
    }

    fn describe(groups: &[&str]) -> Request {
        Request::DescribeGroups(
            DescribeGroupsRequest::default().with_groups(groups.iter().map(|g| gid(g)).collect()),
        )
    }

    #[test]
    fn one_group_follows_its_rule() {
        let r = rules(GroupMode::Passthrough, &[("orders-*", GroupMode::Local)]);
        assert_eq!(group_route(&heartbeat("orders-1"), &r), GroupRoute::Local);
        assert_eq!(
            group_route(&heartbeat("billing"), &r),
            GroupRoute::Passthrough
        );
        let all_local = rules(GroupMode::Local, &[]);
        assert_eq!(
            group_route(&heartbeat("billing"), &all_local),
            GroupRoute::Local
        );
    }

    #[test]
    fn batches_of_one_mode_go_whole_and_mixed_ones_split() {
        let r = rules(GroupMode::Passthrough, &[("orders-*", GroupMode::Local)]);
        assert_eq!(
            group_route(&describe(&["orders-1", "orders-2"]), &r),
            GroupRoute::Local
        );
        assert_eq!(
            group_route(&describe(&["a", "b"]), &r),
            GroupRoute::Passthrough
        );
        assert_eq!(
            group_route(&describe(&["a", "orders-1", "b"]), &r),
            GroupRoute::Split(vec![true, false, true])
        );
        assert_eq!(group_route(&describe(&[]), &r), GroupRoute::Local);
        let fetch = Request::OffsetFetch(OffsetFetchRequest::default().with_groups(vec![
            OffsetFetchRequestGroup::default().with_group_id(gid("orders-9")),
            OffsetFetchRequestGroup::default().with_group_id(gid("x")),
        ]));
        assert_eq!(
            group_route(&fetch, &r),
            GroupRoute::Split(vec![false, true])
        );
        let delete = Request::DeleteGroups(
            DeleteGroupsRequest::default().with_groups_names(vec![gid("orders-1")]),
        );
        assert_eq!(group_route(&delete, &r), GroupRoute::Local);
    }

    #[test]
    fn list_groups_merges_only_when_both_modes_exist() {
        let list = Request::ListGroups(ListGroupsRequest::default());
        let both = rules(GroupMode::Passthrough, &[("orders-*", GroupMode::Local)]);
        assert_eq!(group_route(&list, &both), GroupRoute::ListBoth);
        let gateway = rules(GroupMode::Passthrough, &[]);
        assert_eq!(group_route(&list, &gateway), GroupRoute::Passthrough);
        let local = rules(GroupMode::Local, &[]);
        assert_eq!(group_route(&list, &local), GroupRoute::Local);
    }
}
