//! Per-group series (METRICS.md "Per group"): generation, members, state, rebalances by reason,
//! rebalance duration, evictions by cause, offset commits by result and mode. Fed by the local
//! coordinator's events and, for passthrough groups, by what kelp reads in the gateway's responses
//! (`passthrough::observe`), both as `Event`s labelled with their mode. Cardinality is bounded: at
//! most `max_tracked` groups get their own series, the rest fold into `group="__other__"` (counters
//! and histograms only), and a group's series are removed when it is deleted or has been Empty
//! longer than `idle_removal`. Gauges show the group's current mode only (`set_modes` after a
//! reload moves a group and drops the other mode's gauges); counters keep both modes' history.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

use crate::group::consumer::ConsumerGroupState;
use crate::group::{ConsumerProgress, Event, GroupState};

/// The label for groups beyond the tracking cap.
pub const OTHER: &str = "__other__";

const STATES: [GroupState; 5] = [
    GroupState::Empty,
    GroupState::PreparingRebalance,
    GroupState::CompletingRebalance,
    GroupState::Stable,
    GroupState::Dead,
];

/// Consumer-group (KIP-848) states as the `state` label spells them.
const CONSUMER_STATES: [ConsumerGroupState; 4] = [
    ConsumerGroupState::Empty,
    ConsumerGroupState::Assigning,
    ConsumerGroupState::Reconciling,
    ConsumerGroupState::Stable,
];

const MODES: [&str; 2] = ["local", "passthrough"];
/// The group's protocol: a classic group, or a consumer group (KIP-848).
const PROTOCOLS: [&str; 2] = ["classic", "consumer"];
/// `unknown`: a passthrough rebalance kelp saw start (REBALANCE_IN_PROGRESS) without its cause.
const REASONS: [&str; 12] = [
    "new_member",
    "metadata_change",
    "leader_rejoin",
    "leave",
    "session_expiry",
    "join_timeout",
    "sync_timeout",
    "static_protocol_change",
    "max_size",
    "load",
    "unknown",
    "target_assignment",
];
const CAUSES: [&str; 5] = [
    "session_expiry",
    "sync_timeout",
    "join_timeout",
    "max_size",
    "rebalance_timeout",
];
/// Commit results removed with a group's series (others are removed when seen, see `seen_results`).
const RESULTS: [&str; 11] = [
    "ok",
    "stale_member_epoch",
    "unsupported_version",
    "illegal_generation",
    "unknown_member_id",
    "rebalance_in_progress",
    "coordinator_not_available",
    "offset_metadata_too_large",
    "fenced_instance_id",
    "group_id_not_found",
    "coordinator_load_in_progress",
];

/// Names the current mode of a group ("local" / "passthrough"): the mode rules in effect.
pub type ModeOf = Arc<dyn Fn(&str) -> &'static str + Send + Sync>;

struct Tracked {
    mode: &'static str,
    /// "classic" until the group's first consumer-group event.
    protocol: &'static str,
    empty_since: Option<Instant>,
    /// A consumer group's new target assignment not yet reconciled by every member.
    target_since: Option<Instant>,
}

/// Every per-group metric family plus the set of tracked groups.
pub struct GroupMetrics {
    generation: IntGaugeVec,
    members: IntGaugeVec,
    state: IntGaugeVec,
    rebalances: IntCounterVec,
    rebalance_duration: HistogramVec,
    evictions: IntCounterVec,
    commits: IntCounterVec,
    mode: IntGaugeVec,
    /// Consumer groups (KIP-848): where reconciliation stands.
    target_epoch: IntGaugeVec,
    min_member_epoch: IntGaugeVec,
    unreconciled: IntGaugeVec,
    pending_revocation: IntGaugeVec,
    unreleased: IntGaugeVec,
    tracked: Mutex<HashMap<String, Tracked>>,
    /// The rules' mode of a group seen for the first time (else the mode of its first event).
    mode_of: Mutex<Option<ModeOf>>,
    max_tracked: usize,
    idle_removal: Duration,
}

impl GroupMetrics {
    pub fn new(registry: &Registry, max_tracked: usize, idle_removal: Duration) -> Self {
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("static metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("static metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let rebalance_duration = HistogramVec::new(
            HistogramOpts::new(
                "kelp_group_rebalance_duration_seconds",
                "Time from entering PreparingRebalance to Stable",
            )
            .buckets(vec![
                0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
            ]),
            &["group", "mode", "protocol"],
        )
        .expect("static metric");
        registry
            .register(Box::new(rebalance_duration.clone()))
            .expect("unique metric");
        GroupMetrics {
            generation: gauge(
                "kelp_group_generation",
                "Current generation id (a consumer group's group epoch)",
                &["group", "mode", "protocol"],
            ),
            members: gauge(
                "kelp_group_members",
                "Current members",
                &["group", "mode", "protocol"],
            ),
            state: gauge(
                "kelp_group_state",
                "1 for the group's current state, 0 for the others",
                &["group", "mode", "protocol", "state"],
            ),
            rebalances: counter(
                "kelp_group_rebalances_total",
                "Rebalances started, by reason (a consumer group's new target assignment: target_assignment)",
                &["group", "mode", "protocol", "reason"],
            ),
            rebalance_duration,
            evictions: counter(
                "kelp_group_member_evictions_total",
                "Members removed without leaving, by cause",
                &["group", "mode", "protocol", "cause"],
            ),
            commits: counter(
                "kelp_group_offset_commits_total",
                "Offset commits, by result (ok or the error name)",
                &["group", "mode", "protocol", "result"],
            ),
            mode: gauge(
                "kelp_group_mode",
                "1 for the group's current mode",
                &["group", "mode"],
            ),
            target_epoch: gauge(
                "kelp_group_target_assignment_epoch",
                "Consumer group: the epoch of its target assignment",
                &["group"],
            ),
            min_member_epoch: gauge(
                "kelp_group_member_epoch_min",
                "Consumer group: the lowest member epoch (how far reconciliation has come)",
                &["group"],
            ),
            unreconciled: gauge(
                "kelp_group_members_unreconciled",
                "Consumer group: members not yet at the target assignment epoch",
                &["group"],
            ),
            pending_revocation: gauge(
                "kelp_group_partitions_pending_revocation",
                "Consumer group: partitions members still hold but must give up",
                &["group"],
            ),
            unreleased: gauge(
                "kelp_group_partitions_unreleased",
                "Consumer group: partitions in a member's target it does not hold yet",
                &["group"],
            ),
            tracked: Mutex::new(HashMap::new()),
            mode_of: Mutex::new(None),
            max_tracked,
            idle_removal,
        }
    }

    /// The label a group's series use: itself when tracked (or trackable), else `__other__`.
    fn label<'a>(
        &self,
        tracked: &mut HashMap<String, Tracked>,
        group: &'a str,
        mode: &'static str,
    ) -> &'a str {
        if tracked.contains_key(group) {
            return group;
        }
        if tracked.len() >= self.max_tracked {
            return OTHER;
        }
        let rules = self.mode_of.lock().ok().and_then(|m| m.clone());
        let mode = rules.map_or(mode, |mode_of| mode_of(group));
        tracked.insert(
            group.to_string(),
            Tracked {
                mode,
                protocol: PROTOCOLS[0],
                empty_since: None,
                target_since: None,
            },
        );
        for m in MODES {
            self.mode
                .with_label_values(&[group, m])
                .set(i64::from(m == mode));
        }
        group
    }

    /// Applies one event of a group served in `mode` ("local" or "passthrough"). Gauges follow
    /// only the group's current mode (an event of the mode it left updates counters alone).
    pub fn apply(&self, event: &Event, mode: &'static str) {
        let Ok(mut tracked) = self.tracked.lock() else {
            return;
        };
        let current = |tracked: &HashMap<String, Tracked>, g: &str| {
            g != OTHER && tracked.get(g).is_some_and(|t| t.mode == mode)
        };
        let protocol_of = |tracked: &HashMap<String, Tracked>, g: &str| {
            tracked.get(g).map_or(PROTOCOLS[0], |t| t.protocol)
        };
        match event {
            Event::GenerationChanged { group, generation } => {
                let g = self.label(&mut tracked, group, mode);
                if current(&tracked, g) {
                    let p = protocol_of(&tracked, g);
                    self.generation
                        .with_label_values(&[g, mode, p])
                        .set(i64::from(*generation));
                }
            }
            Event::MembersChanged { group, members } => {
                let g = self.label(&mut tracked, group, mode);
                if current(&tracked, g) {
                    let p = protocol_of(&tracked, g);
                    self.members
                        .with_label_values(&[g, mode, p])
                        .set(*members as i64);
                }
            }
            Event::StateChanged { group, state } => {
                let g = self.label(&mut tracked, group, mode);
                if current(&tracked, g) {
                    let p = protocol_of(&tracked, g);
                    for s in STATES {
                        self.state
                            .with_label_values(&[g, mode, p, s.as_str()])
                            .set(i64::from(s == *state));
                    }
                    if let Some(t) = tracked.get_mut(g) {
                        t.empty_since = (*state == GroupState::Empty).then(Instant::now);
                    }
                }
            }
            Event::RebalanceStarted { group, reason } => {
                let g = self.label(&mut tracked, group, mode);
                let p = protocol_of(&tracked, g);
                self.rebalances
                    .with_label_values(&[g, mode, p, reason.as_str()])
                    .inc();
            }
            Event::RebalanceCompleted { group, duration_ms } => {
                let g = self.label(&mut tracked, group, mode);
                let p = protocol_of(&tracked, g);
                self.rebalance_duration
                    .with_label_values(&[g, mode, p])
                    .observe(*duration_ms as f64 / 1000.0);
            }
            Event::MemberEvicted { group, cause } => {
                let g = self.label(&mut tracked, group, mode);
                let p = protocol_of(&tracked, g);
                self.evictions
                    .with_label_values(&[g, mode, p, cause.as_str()])
                    .inc();
            }
            Event::OffsetCommit { group, error } => {
                let g = self.label(&mut tracked, group, mode);
                let p = protocol_of(&tracked, g);
                let result = super::error_name(*error);
                self.commits.with_label_values(&[g, mode, p, &result]).inc();
            }
            Event::GroupDeleted { group } | Event::GroupReleased { group } => {
                if tracked.remove(group.as_str()).is_some() {
                    self.remove_series(group);
                }
            }
            Event::TargetAssigned { group } => {
                let g = self.label(&mut tracked, group, mode);
                self.make_consumer(&mut tracked, g, mode);
                self.rebalances
                    .with_label_values(&[g, mode, PROTOCOLS[1], "target_assignment"])
                    .inc();
                if let Some(t) = tracked.get_mut(g) {
                    t.target_since.get_or_insert_with(Instant::now);
                }
            }
            Event::ConsumerProgress { group, progress } => {
                let g = self.label(&mut tracked, group, mode);
                self.make_consumer(&mut tracked, g, mode);
                if current(&tracked, g) {
                    self.consumer_gauges(&mut tracked, g, mode, progress);
                }
            }
        }
    }

    /// From its first consumer-group event on, a group's series carry `protocol="consumer"`
    /// (a classic group upgraded to a consumer group loses its classic gauges).
    fn make_consumer(&self, tracked: &mut HashMap<String, Tracked>, g: &str, mode: &str) {
        let Some(t) = tracked.get_mut(g) else { return };
        if t.protocol != PROTOCOLS[1] {
            self.remove_protocol_gauges(g, mode, t.protocol);
            t.protocol = PROTOCOLS[1];
        }
    }

    /// A consumer group's gauges from where it stands; a reconciliation that completed observes
    /// its duration (from the target assignment to every member at it, nothing pending).
    fn consumer_gauges(
        &self,
        tracked: &mut HashMap<String, Tracked>,
        g: &str,
        mode: &'static str,
        p: &ConsumerProgress,
    ) {
        let labels = [g, mode, PROTOCOLS[1]];
        self.generation
            .with_label_values(&labels)
            .set(i64::from(p.group_epoch));
        self.members
            .with_label_values(&labels)
            .set(p.members as i64);
        for s in CONSUMER_STATES {
            self.state
                .with_label_values(&[g, mode, PROTOCOLS[1], s.name()])
                .set(i64::from(s == p.state));
        }
        self.target_epoch
            .with_label_values(&[g])
            .set(i64::from(p.target_epoch));
        self.min_member_epoch
            .with_label_values(&[g])
            .set(i64::from(p.min_member_epoch));
        self.unreconciled
            .with_label_values(&[g])
            .set(p.unreconciled as i64);
        self.pending_revocation
            .with_label_values(&[g])
            .set(p.pending_revocation as i64);
        self.unreleased
            .with_label_values(&[g])
            .set(p.unreleased as i64);
        let Some(t) = tracked.get_mut(g) else { return };
        t.empty_since = (p.state == ConsumerGroupState::Empty).then(Instant::now);
        let settled = p.unreconciled == 0 && p.pending_revocation == 0 && p.unreleased == 0;
        if settled {
            if let Some(since) = t.target_since.take() {
                self.rebalance_duration
                    .with_label_values(&labels)
                    .observe(since.elapsed().as_secs_f64());
            }
        }
    }

    /// The label a group's lag series use: the group itself when tracked (tracking it if the cap
    /// allows, as any event does), else `__other__`.
    pub fn label_for(&self, group: &str, mode: &'static str) -> String {
        let Ok(mut tracked) = self.tracked.lock() else {
            return OTHER.to_string();
        };
        self.label(&mut tracked, group, mode).to_string()
    }

    /// Counts a passthrough rebalance whose cause kelp did not see (`reason="unknown"`).
    pub fn rebalance_started_unknown(&self, group: &str, mode: &'static str) {
        let Ok(mut tracked) = self.tracked.lock() else {
            return;
        };
        let g = self.label(&mut tracked, group, mode);
        self.rebalances
            .with_label_values(&[g, mode, PROTOCOLS[0], "unknown"])
            .inc();
    }

    /// At start and after a reload: moves every tracked group to the mode `mode_of` names, and
    /// groups seen later start in it. A group that changes mode flips its `kelp_group_mode`
    /// series and loses the old mode's gauges (generation, members, state); its counters stay
    /// under the old mode.
    pub fn set_modes(&self, mode_of: ModeOf) {
        if let Ok(mut current) = self.mode_of.lock() {
            *current = Some(mode_of.clone());
        }
        let Ok(mut tracked) = self.tracked.lock() else {
            return;
        };
        for (group, t) in tracked.iter_mut() {
            let mode = mode_of(group);
            if mode == t.mode {
                continue;
            }
            self.remove_gauges(group, t.mode);
            t.mode = mode;
            t.empty_since = None;
            for m in MODES {
                self.mode
                    .with_label_values(&[group, m])
                    .set(i64::from(m == mode));
            }
        }
    }

    /// The mode a tracked group's gauges follow.
    pub fn mode_of(&self, group: &str) -> Option<&'static str> {
        self.tracked.lock().ok()?.get(group).map(|t| t.mode)
    }

    /// Removes the series of groups that have been Empty longer than the idle time.
    pub fn sweep(&self) {
        let Ok(mut tracked) = self.tracked.lock() else {
            return;
        };
        let idle: Vec<String> = tracked
            .iter()
            .filter(|(_, t)| {
                t.empty_since
                    .is_some_and(|at| at.elapsed() >= self.idle_removal)
            })
            .map(|(g, _)| g.clone())
            .collect();
        for group in idle {
            tracked.remove(&group);
            self.remove_series(&group);
        }
    }

    fn remove_gauges(&self, group: &str, mode: &str) {
        for protocol in PROTOCOLS {
            self.remove_protocol_gauges(group, mode, protocol);
        }
    }

    fn remove_protocol_gauges(&self, group: &str, mode: &str, protocol: &str) {
        for family in [&self.generation, &self.members] {
            let _ = family.remove_label_values(&[group, mode, protocol]);
        }
        let states = STATES
            .iter()
            .map(|s| s.as_str())
            .chain(CONSUMER_STATES.iter().map(|s| s.name()));
        for s in states {
            let _ = self.state.remove_label_values(&[group, mode, protocol, s]);
        }
    }

    /// Every series of the group, in both modes and protocols.
    fn remove_series(&self, group: &str) {
        for family in [
            &self.target_epoch,
            &self.min_member_epoch,
            &self.unreconciled,
            &self.pending_revocation,
            &self.unreleased,
        ] {
            let _ = family.remove_label_values(&[group]);
        }
        for mode in MODES {
            let _ = self.mode.remove_label_values(&[group, mode]);
            self.remove_gauges(group, mode);
            for protocol in PROTOCOLS {
                for (family, values) in [
                    (&self.rebalances, &REASONS[..]),
                    (&self.evictions, &CAUSES[..]),
                    (&self.commits, &RESULTS[..]),
                ] {
                    for v in values {
                        let _ = family.remove_label_values(&[group, mode, protocol, v]);
                    }
                }
                let _ = self
                    .rebalance_duration
                    .remove_label_values(&[group, mode, protocol]);
            }
        }
    }

    /// Groups with their own series.
    pub fn tracked(&self) -> usize {
        self.tracked.lock().map(|t| t.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::RebalanceReason;
    use prometheus::Encoder;

    fn text(registry: &Registry) -> String {
        let mut out = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&registry.gather(), &mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn groups_beyond_the_cap_fold_into_other() {
        let registry = Registry::new();
        let m = GroupMetrics::new(&registry, 2, Duration::from_secs(3600));
        for g in ["a", "b", "c", "d"] {
            m.apply(
                &Event::RebalanceStarted {
                    group: g.into(),
                    reason: RebalanceReason::NewMember,
                },
                "local",
            );
        }
        let out = text(&registry);
        assert!(out.contains(
            r#"kelp_group_rebalances_total{group="a",mode="local",protocol="classic",reason="new_member"} 1"#
        ));
        assert!(out.contains(
            r#"kelp_group_rebalances_total{group="__other__",mode="local",protocol="classic",reason="new_member"} 2"#
        ));
        assert!(!out.contains(r#"group="c""#));
        assert_eq!(m.tracked(), 2);
    }

    #[test]
    fn a_mode_switch_moves_the_gauges_and_keeps_the_counters() {
        let registry = Registry::new();
        let m = GroupMetrics::new(&registry, 10, Duration::from_secs(3600));
        let generation = |g: i32| Event::GenerationChanged {
            group: "g".into(),
            generation: g,
        };
        m.apply(&generation(7), "passthrough");
        m.rebalance_started_unknown("g", "passthrough");
        m.set_modes(Arc::new(|_| "local"));
        assert_eq!(m.mode_of("g"), Some("local"));
        // A late passthrough response counts, but no longer drives the gauges.
        m.apply(&generation(8), "passthrough");
        m.apply(&generation(1), "local");
        let out = text(&registry);
        assert!(out.contains(r#"kelp_group_mode{group="g",mode="local"} 1"#));
        assert!(out.contains(r#"kelp_group_mode{group="g",mode="passthrough"} 0"#));
        assert!(
            out.contains(r#"kelp_group_generation{group="g",mode="local",protocol="classic"} 1"#)
        );
        assert!(!out.contains(r#"kelp_group_generation{group="g",mode="passthrough","#));
        assert!(out.contains(
            r#"kelp_group_rebalances_total{group="g",mode="passthrough",protocol="classic",reason="unknown"} 1"#
        ));
        m.apply(&Event::GroupDeleted { group: "g".into() }, "local");
        assert!(!text(&registry).contains(r#"group="g""#));
        // A group first seen through an event of the mode it is not in starts in its rules' mode:
        // the event counts, the gauges wait for events of that mode.
        m.apply(&generation(3), "local");
        assert_eq!(m.mode_of("g"), Some("local"));
        m.set_modes(Arc::new(|_| "passthrough"));
        m.apply(
            &Event::GenerationChanged {
                group: "h".into(),
                generation: 4,
            },
            "local",
        );
        assert_eq!(m.mode_of("h"), Some("passthrough"));
        assert!(!text(&registry).contains(r#"kelp_group_generation{group="h""#));
    }

    #[test]
    fn deleted_and_idle_groups_lose_their_series() {
        let registry = Registry::new();
        let m = GroupMetrics::new(&registry, 10, Duration::ZERO);
        let ev = |group: &str, state| Event::StateChanged {
            group: group.into(),
            state,
        };
        m.apply(&ev("gone", GroupState::Stable), "local");
        m.apply(&ev("idle", GroupState::Empty), "local");
        m.apply(&ev("busy", GroupState::Stable), "local");
        m.apply(
            &Event::GroupDeleted {
                group: "gone".into(),
            },
            "local",
        );
        m.sweep();
        let out = text(&registry);
        assert!(!out.contains(r#"group="gone""#));
        assert!(!out.contains(r#"group="idle""#));
        assert!(out.contains(
            r#"kelp_group_state{group="busy",mode="local",protocol="classic",state="Stable"} 1"#
        ));
        assert!(out.contains(r#"kelp_group_mode{group="busy",mode="local"} 1"#));
    }

    #[test]
    fn a_consumer_group_has_protocol_consumer_and_reconciliation_gauges() {
        let registry = Registry::new();
        let m = GroupMetrics::new(&registry, 10, Duration::from_secs(3600));
        // A classic group first (e.g. before an online upgrade)...
        m.apply(
            &Event::GenerationChanged {
                group: "g".into(),
                generation: 3,
            },
            "local",
        );
        assert!(text(&registry)
            .contains(r#"kelp_group_generation{group="g",mode="local",protocol="classic"} 3"#));
        // ...then a consumer group with a new target not yet reconciled.
        m.apply(&Event::TargetAssigned { group: "g".into() }, "local");
        let progress = |unreconciled, pending| ConsumerProgress {
            state: if unreconciled > 0 {
                ConsumerGroupState::Reconciling
            } else {
                ConsumerGroupState::Stable
            },
            group_epoch: 5,
            target_epoch: 5,
            members: 3,
            min_member_epoch: if unreconciled > 0 { 4 } else { 5 },
            unreconciled,
            pending_revocation: pending,
            unreleased: pending,
        };
        m.apply(
            &Event::ConsumerProgress {
                group: "g".into(),
                progress: progress(1, 2),
            },
            "local",
        );
        let out = text(&registry);
        assert!(
            !out.contains(r#"protocol="classic"} 3"#),
            "classic gauges gone"
        );
        for want in [
            r#"kelp_group_generation{group="g",mode="local",protocol="consumer"} 5"#,
            r#"kelp_group_members{group="g",mode="local",protocol="consumer"} 3"#,
            r#"kelp_group_state{group="g",mode="local",protocol="consumer",state="Reconciling"} 1"#,
            r#"kelp_group_target_assignment_epoch{group="g"} 5"#,
            r#"kelp_group_member_epoch_min{group="g"} 4"#,
            r#"kelp_group_members_unreconciled{group="g"} 1"#,
            r#"kelp_group_partitions_pending_revocation{group="g"} 2"#,
            r#"kelp_group_partitions_unreleased{group="g"} 2"#,
            r#"kelp_group_rebalances_total{group="g",mode="local",protocol="consumer",reason="target_assignment"} 1"#,
        ] {
            assert!(out.contains(want), "missing {want}\n{out}");
        }
        assert!(!out.contains("kelp_group_rebalance_duration_seconds_count{group=\"g\""));
        // Reconciled: the rebalance's duration is observed once.
        m.apply(
            &Event::ConsumerProgress {
                group: "g".into(),
                progress: progress(0, 0),
            },
            "local",
        );
        let out = text(&registry);
        assert!(out.contains(
            r#"kelp_group_rebalance_duration_seconds_count{group="g",mode="local",protocol="consumer"} 1"#
        ));
        assert!(out.contains(r#"kelp_group_members_unreconciled{group="g"} 0"#));
        m.apply(&Event::GroupReleased { group: "g".into() }, "local");
        assert!(!text(&registry).contains(r#"group="g""#));
    }
}
