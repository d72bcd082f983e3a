//! Requests that span owners. A batch (DescribeGroups, DeleteGroups, OffsetFetch v8+) naming
//! groups of several kelps is split into one request per owner, each sent to that owner's peer
//! listener (this kelp's own included, so its mode rules apply as usual), and the answers are put
//! back in request order. ListGroups goes to every live peer and the lists are merged, so a client
//! of any kelp sees every group of the mesh. A part that gets no answer is answered
//! NOT_COORDINATOR for its groups (ListGroups: COORDINATOR_NOT_AVAILABLE), which clients retry.

use std::collections::HashSet;

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;

use crate::group::{named_groups, refusal, Request, Response};
use crate::protocol::{error, split_response};

/// One part of a scattered request: the peer to send it to and what to send.
pub struct Part {
    pub owner: String,
    pub request: Request,
}

/// Splits a batch by owner (`owner_of` names each group's), keeping each part's groups in
/// request order; ListGroups goes whole to every peer in `everyone`.
pub fn split(
    request: &Request,
    owner_of: impl Fn(&str) -> String,
    everyone: &[String],
) -> Vec<Part> {
    if let Request::ListGroups(_) = request {
        return everyone
            .iter()
            .map(|p| Part {
                owner: p.clone(),
                request: request.clone(),
            })
            .collect();
    }
    let mut owners: Vec<String> = Vec::new();
    for g in named_groups(request) {
        let o = owner_of(g);
        if !owners.contains(&o) {
            owners.push(o);
        }
    }
    owners
        .into_iter()
        .map(|owner| {
            let keep = |g: &str| owner_of(g) == owner;
            let mut part = request.clone();
            match &mut part {
                Request::DescribeGroups(r) => r.groups.retain(|g| keep(g)),
                Request::DeleteGroups(r) => r.groups_names.retain(|g| keep(g)),
                Request::OffsetFetch(r) => r.groups.retain(|g| keep(&g.group_id)),
                Request::ConsumerGroupDescribe(r) => r.group_ids.retain(|g| keep(g)),
                _ => {}
            }
            Part {
                owner,
                request: part,
            }
        })
        .collect()
}

/// Decodes a peer's answer to one part (the frame with its length prefix).
pub fn decode(api: ApiKey, version: i16, frame: Bytes) -> anyhow::Result<Response> {
    use kafka_protocol::protocol::Decodable;
    let (_, mut body) = split_response(frame.slice(4..), api, version)?;
    let mut response = match api {
        ApiKey::DescribeGroups => Response::DescribeGroups(Decodable::decode(&mut body, version)?),
        ApiKey::DeleteGroups => Response::DeleteGroups(Decodable::decode(&mut body, version)?),
        ApiKey::OffsetFetch => Response::OffsetFetch(Decodable::decode(&mut body, version)?),
        ApiKey::ListGroups => Response::ListGroups(Decodable::decode(&mut body, version)?),
        ApiKey::ConsumerGroupDescribe => {
            Response::ConsumerGroupDescribe(Decodable::decode(&mut body, version)?)
        }
        other => anyhow::bail!("{other:?} is not scattered"),
    };
    drop_unknown_tags(&mut response);
    Ok(response)
}

/// Unknown tagged fields mean nothing to kelp (its peers send none), and kafka-protocol does not
/// always re-encode what it decoded of them (docs/RELIABILITY.md, finding 3): a merged answer
/// carries none.
fn drop_unknown_tags(response: &mut Response) {
    match response {
        Response::DescribeGroups(r) => {
            r.unknown_tagged_fields.clear();
            for g in &mut r.groups {
                g.unknown_tagged_fields.clear();
                for m in &mut g.members {
                    m.unknown_tagged_fields.clear();
                }
            }
        }
        Response::DeleteGroups(r) => {
            r.unknown_tagged_fields.clear();
            for g in &mut r.results {
                g.unknown_tagged_fields.clear();
            }
        }
        Response::OffsetFetch(r) => {
            r.unknown_tagged_fields.clear();
            for g in &mut r.groups {
                g.unknown_tagged_fields.clear();
                for t in &mut g.topics {
                    t.unknown_tagged_fields.clear();
                    for p in &mut t.partitions {
                        p.unknown_tagged_fields.clear();
                    }
                }
            }
        }
        Response::ListGroups(r) => {
            r.unknown_tagged_fields.clear();
            for g in &mut r.groups {
                g.unknown_tagged_fields.clear();
            }
        }
        Response::ConsumerGroupDescribe(r) => {
            r.unknown_tagged_fields.clear();
            for g in &mut r.groups {
                g.unknown_tagged_fields.clear();
                for m in &mut g.members {
                    m.unknown_tagged_fields.clear();
                }
            }
        }
        _ => {}
    }
}

/// What a part that got no answer contributes.
pub fn unanswered(part: &Request, version: i16) -> Response {
    let code = match part {
        Request::ListGroups(_) => error::COORDINATOR_NOT_AVAILABLE,
        _ => error::NOT_COORDINATOR,
    };
    refusal(part, version, code)
}

/// Puts the parts' answers together as the answer to `request`: per-group entries in request
/// order, ListGroups' lists merged (a group listed by several peers, as a passthrough group can
/// be, once), the longest throttle time.
pub fn merge(request: &Request, parts: Vec<Response>) -> Response {
    let order: Vec<&str> = named_groups(request);
    let rank = |g: &str| order.iter().position(|o| *o == g).unwrap_or(usize::MAX);
    // One batch API: every part's entries in one list, in request order.
    macro_rules! per_group {
        ($variant:ident, $body:ident, $list:ident) => {{
            let mut out = kafka_protocol::messages::$body::default();
            for p in parts {
                if let Response::$variant(r) = p {
                    out.throttle_time_ms = out.throttle_time_ms.max(r.throttle_time_ms);
                    out.$list.extend(r.$list);
                }
            }
            out.$list.sort_by_key(|g| rank(&g.group_id));
            Response::$variant(out)
        }};
    }
    match request {
        Request::DescribeGroups(_) => per_group!(DescribeGroups, DescribeGroupsResponse, groups),
        Request::DeleteGroups(_) => per_group!(DeleteGroups, DeleteGroupsResponse, results),
        Request::OffsetFetch(_) => per_group!(OffsetFetch, OffsetFetchResponse, groups),
        Request::ConsumerGroupDescribe(_) => {
            per_group!(ConsumerGroupDescribe, ConsumerGroupDescribeResponse, groups)
        }
        _ => {
            let mut out = kafka_protocol::messages::ListGroupsResponse::default();
            let mut seen = HashSet::new();
            for p in parts {
                if let Response::ListGroups(r) = p {
                    out.throttle_time_ms = out.throttle_time_ms.max(r.throttle_time_ms);
                    if out.error_code == error::NONE {
                        out.error_code = r.error_code;
                    }
                    for g in r.groups {
                        if seen.insert(g.group_id.clone()) {
                            out.groups.push(g);
                        }
                    }
                }
            }
            out.groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
            Response::ListGroups(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::describe_groups_response::DescribedGroup;
    use kafka_protocol::messages::list_groups_response::ListedGroup;
    use kafka_protocol::messages::{
        DescribeGroupsRequest, DescribeGroupsResponse, GroupId, ListGroupsRequest,
        ListGroupsResponse,
    };
    use kafka_protocol::protocol::StrBytes;

    fn gid(g: &str) -> GroupId {
        GroupId(StrBytes::from_string(g.to_string()))
    }

    fn describe(groups: &[&str]) -> Request {
        Request::DescribeGroups(
            DescribeGroupsRequest::default().with_groups(groups.iter().map(|g| gid(g)).collect()),
        )
    }

    fn owner(g: &str) -> String {
        if g.starts_with('a') { "A" } else { "B" }.to_string()
    }

    #[test]
    fn a_batch_splits_by_owner_and_merges_back_in_request_order() {
        let request = describe(&["a1", "b1", "a2", "b2"]);
        let parts = split(&request, owner, &[]);
        let names: Vec<(String, Vec<String>)> = parts
            .iter()
            .map(|p| {
                (
                    p.owner.clone(),
                    named_groups(&p.request)
                        .iter()
                        .map(|g| g.to_string())
                        .collect(),
                )
            })
            .collect();
        assert_eq!(
            names,
            vec![
                ("A".into(), vec!["a1".into(), "a2".into()]),
                ("B".into(), vec!["b1".into(), "b2".into()])
            ]
        );
        let answer = |p: &Part| {
            Response::DescribeGroups(
                DescribeGroupsResponse::default().with_groups(
                    named_groups(&p.request)
                        .iter()
                        .map(|g| {
                            DescribedGroup::default()
                                .with_group_id(gid(g))
                                .with_group_state(StrBytes::from_static_str("Stable"))
                        })
                        .collect(),
                ),
            )
        };
        // B's part got no answer: its groups say NOT_COORDINATOR.
        let responses = vec![answer(&parts[0]), unanswered(&parts[1].request, 5)];
        let Response::DescribeGroups(merged) = merge(&request, responses) else {
            panic!()
        };
        let got: Vec<(String, i16)> = merged
            .groups
            .iter()
            .map(|g| (g.group_id.to_string(), g.error_code))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a1".into(), 0),
                ("b1".into(), 16),
                ("a2".into(), 0),
                ("b2".into(), 16)
            ]
        );
    }

    #[test]
    fn list_groups_goes_to_everyone_and_merges_without_duplicates() {
        let request = Request::ListGroups(ListGroupsRequest::default());
        let everyone = vec!["A".to_string(), "B".to_string(), "C".to_string()];
        let parts = split(&request, owner, &everyone);
        assert_eq!(
            parts.iter().map(|p| p.owner.as_str()).collect::<Vec<_>>(),
            ["A", "B", "C"]
        );
        let list = |gs: &[&str]| {
            Response::ListGroups(
                ListGroupsResponse::default().with_groups(
                    gs.iter()
                        .map(|g| ListedGroup::default().with_group_id(gid(g)))
                        .collect(),
                ),
            )
        };
        let merged = merge(
            &request,
            vec![list(&["x", "shared"]), list(&["shared", "a"]), list(&[])],
        );
        let Response::ListGroups(r) = merged else {
            panic!()
        };
        let names: Vec<String> = r.groups.iter().map(|g| g.group_id.to_string()).collect();
        assert_eq!(names, ["a", "shared", "x"]);
        assert_eq!(r.error_code, 0);
        let merged = merge(
            &request,
            vec![list(&["x"]), unanswered(&parts[1].request, 4)],
        );
        let Response::ListGroups(r) = merged else {
            panic!()
        };
        assert_eq!(
            (r.error_code, r.groups.len()),
            (15, 1),
            "a peer that did not answer is reported, retriably"
        );
    }
}
