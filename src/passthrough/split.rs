//! Group requests that need both coordinators. A batch naming groups of both modes (DescribeGroups,
//! DeleteGroups, OffsetFetch v8+): kelp's coordinator answers its groups and every passthrough
//! group gets NOT_COORDINATOR, in request order; clients retry those, and a batch of passthrough
//! groups alone goes to the gateway. ListGroups while both modes exist: the gateway's list and
//! kelp's, each group listed by the coordinator its current mode names (kelp's alone when the
//! gateway's answer does not decode, as with 4.48).

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::offset_fetch_response::OffsetFetchResponseGroup;
use kafka_protocol::messages::{ApiKey, GroupId, ListGroupsRequest, ListGroupsResponse};
use kafka_protocol::protocol::{Decodable, StrBytes};

use crate::config::GroupMode;
use crate::coordinator::{self, GroupService};
use crate::group::{Request, Response};
use crate::modes::Modes;
use crate::protocol::LocalReply;
use crate::protocol::{encode_response, error, split_response, Peek};

/// `request` with only the groups whose flag in `passthrough` is false.
fn local_part(request: &Request, passthrough: &[bool]) -> Request {
    fn keep<T: Clone>(items: &[T], passthrough: &[bool]) -> Vec<T> {
        items
            .iter()
            .zip(passthrough.iter().chain(std::iter::repeat(&false)))
            .filter(|(_, p)| !**p)
            .map(|(i, _)| i.clone())
            .collect()
    }
    let mut request = request.clone();
    match &mut request {
        Request::DescribeGroups(r) => r.groups = keep(&r.groups, passthrough),
        Request::DeleteGroups(r) => r.groups_names = keep(&r.groups_names, passthrough),
        Request::OffsetFetch(r) => r.groups = keep(&r.groups, passthrough),
        _ => {}
    }
    request
}

/// Puts NOT_COORDINATOR entries for the passthrough groups of `ids` into kelp's answer for the
/// others, keeping request order.
fn complete(response: Response, ids: &[String], passthrough: &[bool]) -> Response {
    fn merge<T>(
        ids: &[String],
        passthrough: &[bool],
        mut ours: Vec<T>,
        id_of: impl Fn(&T) -> &str,
        elsewhere: impl Fn(&str) -> T,
    ) -> Vec<T> {
        let mut out = Vec::with_capacity(ids.len());
        for (id, p) in ids.iter().zip(passthrough) {
            if *p {
                out.push(elsewhere(id));
            } else if let Some(i) = ours.iter().position(|e| id_of(e) == id) {
                out.push(ours.remove(i));
            }
        }
        out.extend(ours);
        out
    }
    let gid = |id: &str| GroupId(StrBytes::from_string(id.to_string()));
    match response {
        Response::DescribeGroups(mut r) => {
            r.groups = merge(
                ids,
                passthrough,
                r.groups,
                |g| g.group_id.as_str(),
                |id| {
                    DescribedGroup::default()
                        .with_group_id(gid(id))
                        .with_error_code(error::NOT_COORDINATOR)
                        .with_group_state(StrBytes::from_static_str("Dead"))
                },
            );
            Response::DescribeGroups(r)
        }
        Response::DeleteGroups(mut r) => {
            r.results = merge(
                ids,
                passthrough,
                r.results,
                |g| g.group_id.as_str(),
                |id| {
                    DeletableGroupResult::default()
                        .with_group_id(gid(id))
                        .with_error_code(error::NOT_COORDINATOR)
                },
            );
            Response::DeleteGroups(r)
        }
        Response::OffsetFetch(mut r) => {
            r.groups = merge(
                ids,
                passthrough,
                r.groups,
                |g| g.group_id.as_str(),
                |id| {
                    OffsetFetchResponseGroup::default()
                        .with_group_id(gid(id))
                        .with_error_code(error::NOT_COORDINATOR)
                },
            );
            Response::OffsetFetch(r)
        }
        other => other,
    }
}

/// kelp's answer to a mixed-mode batch (see the module docs).
pub fn answer_split(
    groups: &GroupService,
    peek: &Peek,
    client_id: String,
    client_host: &str,
    request: Request,
    ids: Vec<String>,
    passthrough: Vec<bool>,
) -> LocalReply {
    let reply = groups.send_decoded(
        peek.api_version,
        client_id,
        client_host,
        local_part(&request, &passthrough),
    );
    let peek = *peek;
    Box::pin(async move {
        let response = complete(reply.await?, &ids, &passthrough);
        coordinator::encode(&peek, &response).ok()
    })
}

/// Merges the gateway's ListGroups response (`frame`, length prefix included) with kelp's.
pub fn merge_list(
    groups: &GroupService,
    modes: Arc<Modes>,
    version: i16,
    request: ListGroupsRequest,
    client_host: &str,
    frame: Bytes,
) -> LocalReply {
    let ours = groups.send_decoded(
        version,
        "kelp".into(),
        client_host,
        Request::ListGroups(request),
    );
    Box::pin(async move {
        let (correlation_id, mut body) =
            split_response(frame.slice(4..), ApiKey::ListGroups, version).ok()?;
        let Some(Response::ListGroups(ours)) = ours.await else {
            return Some(frame);
        };
        // Gateway 4.48 answers ListGroups with a malformed body (its correlation id twice): then
        // only kelp's groups are listed.
        let theirs = ListGroupsResponse::decode(&mut body, version).unwrap_or_else(|e| {
            tracing::debug!(error = %e, "the gateway's ListGroups response does not decode; listing kelp's groups only");
            ListGroupsResponse::default()
        });
        let rules = modes.snapshot();
        let mut merged = ListGroupsResponse::default()
            .with_throttle_time_ms(theirs.throttle_time_ms)
            .with_error_code(if theirs.error_code != 0 && ours.error_code != 0 {
                theirs.error_code
            } else {
                0
            });
        merged.groups = theirs
            .groups
            .into_iter()
            .filter(|g| rules.mode_of(g.group_id.as_str()) == GroupMode::Passthrough)
            .chain(
                ours.groups
                    .into_iter()
                    .filter(|g| rules.mode_of(g.group_id.as_str()) == GroupMode::Local),
            )
            .collect();
        encode_response(ApiKey::ListGroups, version, correlation_id, &merged).ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};

    fn gid(g: &str) -> GroupId {
        GroupId(StrBytes::from_string(g.to_string()))
    }

    #[test]
    fn a_mixed_describe_keeps_order_and_marks_the_gateways_groups() {
        let request = Request::DescribeGroups(DescribeGroupsRequest::default().with_groups(vec![
            gid("p1"),
            gid("l1"),
            gid("p2"),
        ]));
        let passthrough = vec![true, false, true];
        let Request::DescribeGroups(local) = local_part(&request, &passthrough) else {
            panic!("not a DescribeGroups")
        };
        assert_eq!(local.groups, vec![gid("l1")]);
        let ours = DescribeGroupsResponse::default().with_groups(vec![DescribedGroup::default()
            .with_group_id(gid("l1"))
            .with_group_state(StrBytes::from_static_str("Stable"))]);
        let ids: Vec<String> = ["p1", "l1", "p2"].iter().map(|s| s.to_string()).collect();
        let Response::DescribeGroups(r) =
            complete(Response::DescribeGroups(ours), &ids, &passthrough)
        else {
            panic!("not a DescribeGroups")
        };
        let got: Vec<(&str, i16)> = r
            .groups
            .iter()
            .map(|g| (g.group_id.as_str(), g.error_code))
            .collect();
        assert_eq!(got, [("p1", 16), ("l1", 0), ("p2", 16)]);
    }
}
