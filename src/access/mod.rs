//! Access control, the way Kafka's authorizer answers: which groups and topics a client may touch.
//! The `[access]` section of the `--config` file (`file.rs`, reloaded with it) holds the rules
//! (`rules.rs`); the client's principal comes from its TLS certificate (`principal.rs`). The kelp a
//! client connected to checks each request before routing or forwarding it (`Guard::check`, one
//! call from `server::conn`): allowed requests go on unchanged, refused ones are answered here
//! with Kafka's per-resource errors (TOPIC_AUTHORIZATION_FAILED 29, GROUP_AUTHORIZATION_FAILED 30,
//! CLUSTER_AUTHORIZATION_FAILED 31), and a batch refused in part goes on without the refused
//! entries, which are put back into its answer (`Patch`). Per API: `data.rs` (topics) and
//! `groups.rs` (groups). Requests from other kelps (the peer listener) are not checked again.
//! Without an `[access]` section nothing is decoded and everything is allowed. Must not decode
//! records, and must not block.

pub mod data;
pub mod file;
pub mod groups;
pub mod principal;
pub mod rules;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::{Decodable, Encodable};
use prometheus::{IntCounterVec, Opts, Registry};

pub use principal::Principal;
pub use rules::{Operation, Policy, ResourceType, Rule};

use crate::metrics::Metrics;
use crate::modes::Modes;
use crate::protocol::{encode_request, encode_response, split_response, FrameError, Peek};
use crate::route::Origin;

/// Kafka's error codes for a refused resource.
pub const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
pub const GROUP_AUTHORIZATION_FAILED: i16 = 30;
pub const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;

/// Runs on the response to a request that went on without its refused entries: puts them back
/// (or, for Metadata, ListGroups and OffsetFetch, takes out what the client may not see).
/// `Err` closes the connection: an answer kelp cannot filter is never passed on.
pub type Patch = Box<dyn FnOnce(Bytes) -> Result<Bytes, String> + Send>;

/// What to do with one request.
pub enum Verdict {
    /// Go on as if there were no rules.
    Pass,
    /// Go on with `frame` (the request without its refused entries) if given, else the original;
    /// run `patch` on the response before the client gets it.
    Rewrite {
        frame: Option<Bytes>,
        patch: Option<Patch>,
    },
    /// Refused whole: answer this now (`None`: a Produce with acks=0, which gets no answer).
    Answer(Option<Bytes>),
    /// Refused, and kelp has no per-resource answer for this API: close the connection.
    Close(String),
}

/// The access checks of one client connection: its principal and the rules that apply to it
/// (worked out again when a reload replaces the policy).
pub struct Guard {
    principal: Principal,
    cached: Option<(Arc<Policy>, Vec<Rule>)>,
    /// The last decisions under those rules (a connection usually names the same few topics in
    /// every Produce or Fetch): a hit costs a string comparison instead of a walk of the rules.
    memo: Memo,
}

/// Most decisions a connection remembers.
const MEMO_ENTRIES: usize = 8;

/// One remembered decision: resource type, operation, name, allowed.
type Decision = (ResourceType, Operation, Box<str>, bool);

/// Recent decisions, newest first; cleared when the rules change.
#[derive(Default)]
pub struct Memo(std::cell::RefCell<Vec<Decision>>);

impl Memo {
    fn decide(&self, rules: &[Rule], resource: ResourceType, name: &str, op: Operation) -> bool {
        let mut seen = self.0.borrow_mut();
        if let Some(i) = seen
            .iter()
            .position(|(r, o, n, _)| *r == resource && *o == op && **n == *name)
        {
            let hit = seen.remove(i);
            let allowed = hit.3;
            seen.insert(0, hit);
            return allowed;
        }
        let allowed = rules::decide(rules.iter(), resource, name, op);
        seen.truncate(MEMO_ENTRIES - 1);
        seen.insert(0, (resource, op, name.into(), allowed));
        allowed
    }
}

impl Guard {
    pub fn new(principal: Principal) -> Guard {
        Guard {
            principal,
            cached: None,
            memo: Memo::default(),
        }
    }

    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// Checks one request (`frame` with its length prefix) under the rules in effect now.
    pub fn check(
        &mut self,
        modes: &Modes,
        metrics: &Metrics,
        origin: Origin,
        peek: &Peek,
        frame: &Bytes,
        topics: &crate::topics::TopicIds,
    ) -> Result<Verdict, FrameError> {
        if origin == Origin::Peer {
            return Ok(Verdict::Pass); // Checked by the kelp the client connected to.
        }
        let current = modes.access();
        let Some(policy) = &current.access else {
            return Ok(Verdict::Pass);
        };
        let fresh = match &self.cached {
            Some((p, _)) => !Arc::ptr_eq(p, policy),
            None => true,
        };
        if fresh {
            let mine = policy.rules_for(&self.principal.names);
            self.cached = Some((policy.clone(), mine));
            self.memo = Memo::default();
        }
        let rules = self.cached.as_ref().map_or(&[][..], |(_, r)| r.as_slice());
        let ctx = Ctx {
            rules,
            principal: &self.principal,
            peek: *peek,
            denied: &metrics.authorization_denied,
            memo: &self.memo,
            topic_name: &|id| topics.name_of(id),
        };
        match peek.api_key {
            ApiKey::FindCoordinator | ApiKey::ApiVersions => groups::check_answered(&ctx, frame),
            api if crate::protocol::kelp_range(api)
                .is_some_and(|(h, _)| h == crate::protocol::Handling::Group) =>
            {
                groups::check(&ctx, frame)
            }
            _ => data::check(&ctx, frame),
        }
    }
}

/// What one check needs: the rules for this principal, the request's header, the metric.
pub struct Ctx<'a> {
    rules: &'a [Rule],
    principal: &'a Principal,
    peek: Peek,
    denied: &'a IntCounterVec,
    memo: &'a Memo,
    /// The topic a topic id names (`topics::TopicIds`), for requests naming topics by id.
    topic_name: &'a dyn Fn(uuid::Uuid) -> Option<String>,
}

impl Ctx<'_> {
    /// Whether the principal may do `op` on the resource; a refusal is counted and logged.
    pub fn allowed(&self, resource: ResourceType, name: &str, op: Operation) -> bool {
        if self.memo.decide(self.rules, resource, name, op) {
            return true;
        }
        self.denied
            .with_label_values(&[&format!("{:?}", self.peek.api_key), resource.as_str()])
            .inc();
        log_denial(self.principal.name(), self.peek.api_key, resource, name, op);
        false
    }

    /// Whether the principal may do `op` on the resource, without counting a refusal (used where
    /// a refusal only narrows an answer, as ListGroups' list).
    pub fn allowed_silently(&self, resource: ResourceType, name: &str, op: Operation) -> bool {
        self.memo.decide(self.rules, resource, name, op)
    }

    /// A frame of the request `body` at this request's version, correlation id and `client_id`.
    pub fn request<T: Encodable>(
        &self,
        client_id: Option<&str>,
        body: &T,
    ) -> Result<Bytes, FrameError> {
        encode_request(
            self.peek.api_key,
            self.peek.api_version,
            self.peek.correlation_id,
            client_id,
            body,
        )
        .map_err(|e| self.undecodable(e))
    }

    /// A response frame with `body` at this request's version and correlation id.
    pub fn response<T: Encodable>(&self, body: &T) -> Result<Bytes, FrameError> {
        encode_response(
            self.peek.api_key,
            self.peek.api_version,
            self.peek.correlation_id,
            body,
        )
        .map_err(|e| self.undecodable(e))
    }

    fn undecodable(&self, e: anyhow::Error) -> FrameError {
        FrameError::Undecodable {
            api: self.peek.api_key,
            version: self.peek.api_version,
            reason: e.to_string(),
        }
    }

    /// The usual end of a check that refused some entries of a list: the request is left with
    /// the allowed ones (`reduced`, or answered at once when none is left: `Resp::default()`
    /// then `fill`), and `fill` adds the refused entries to the answer.
    pub fn finish<Req, Resp>(
        &self,
        client_id: Option<&str>,
        reduced: &Req,
        nothing_left: bool,
        fill: impl FnOnce(&mut Resp) + Send + 'static,
    ) -> Result<Verdict, FrameError>
    where
        Req: Encodable,
        Resp: Encodable + Decodable + Default,
    {
        if nothing_left {
            let mut response = Resp::default();
            fill(&mut response);
            return Ok(Verdict::Answer(Some(self.response(&response)?)));
        }
        Ok(Verdict::Rewrite {
            frame: Some(self.request(client_id, reduced)?),
            patch: Some(self.patch(fill)),
        })
    }

    /// A patch that decodes the answer as `Resp`, runs `edit` on it and encodes it again.
    pub fn patch<Resp>(&self, edit: impl FnOnce(&mut Resp) + Send + 'static) -> Patch
    where
        Resp: Encodable + Decodable,
    {
        let (api, version) = (self.peek.api_key, self.peek.api_version);
        Box::new(move |frame: Bytes| {
            let edited = (|| {
                let (correlation_id, mut body) = split_response(frame.slice(4..), api, version)?;
                let mut response = Resp::decode(&mut body, version)?;
                edit(&mut response);
                encode_response(api, version, correlation_id, &response)
            })();
            edited.map_err(|e| format!("cannot put the refused entries into a {api:?} answer: {e}"))
        })
    }
}

/// Takes out of `items` those `keep` refuses, keeping order; returns them.
pub fn refuse<T>(items: &mut Vec<T>, mut keep: impl FnMut(&T) -> bool) -> Vec<T> {
    let mut refused = Vec::new();
    let mut kept = Vec::with_capacity(items.len());
    for item in items.drain(..) {
        if keep(&item) {
            kept.push(item);
        } else {
            refused.push(item);
        }
    }
    *items = kept;
    refused
}

/// One log line per refusal, at most one a second (the others are counted into the next line).
fn log_denial(principal: &str, api: ApiKey, resource: ResourceType, name: &str, op: Operation) {
    static LAST: Mutex<Option<(Instant, u64)>> = Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    let suppressed = match *last {
        Some((at, n)) if at.elapsed() < Duration::from_secs(1) => {
            *last = Some((at, n + 1));
            return;
        }
        Some((_, n)) => n,
        None => 0,
    };
    *last = Some((Instant::now(), 0));
    drop(last);
    tracing::warn!(
        principal,
        api = ?api,
        resource = resource.as_str(),
        name,
        operation = ?op,
        suppressed,
        "access denied"
    );
}

/// `kelp_authorization_denied_total{api,resource}`, registered once.
pub fn denied_counter(registry: &Registry) -> IntCounterVec {
    let counter = IntCounterVec::new(
        Opts::new(
            "kelp_authorization_denied_total",
            "Resources a request was refused by the [access] rules, by API and resource type",
        ),
        &["api", "resource"],
    )
    .expect("static metric");
    let _ = registry.register(Box::new(counter.clone()));
    counter
}

#[cfg(test)]
mod tests;
