//! Every Prometheus metric kelp exports (METRICS.md), registered in one registry. Hot-path handles
//! (per API and path) are resolved once at startup so a request costs a few atomic adds.
//! The per-group series live in `group.rs`, the consumer-lag series in `lag.rs`.

pub mod group;
pub mod lag;
pub mod lease;

use std::collections::HashMap;
use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::protocol::kelp_range;

/// A Kafka error code as a metric label: `illegal_generation`, `unknown_member_id`, … ("ok" for 0).
pub fn error_name(code: i16) -> String {
    let Some(error) = kafka_protocol::ResponseError::try_from_code(code) else {
        return "ok".to_string();
    };
    if let kafka_protocol::ResponseError::Unknown(code) = error {
        return format!("error_{code}");
    }
    let camel = error.to_string();
    let mut snake = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                snake.push('_');
            }
            snake.push(c.to_ascii_lowercase());
        } else {
            snake.push(c);
        }
    }
    snake
}

/// Where a request went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Path {
    Local,
    Backend,
    Passthrough,
    /// Forwarded to the kelp that owns the group.
    Peer,
}

impl Path {
    pub const ALL: [Path; 4] = [Path::Local, Path::Backend, Path::Passthrough, Path::Peer];
    pub fn as_str(self) -> &'static str {
        match self {
            Path::Local => "local",
            Path::Backend => "backend",
            Path::Passthrough => "passthrough",
            Path::Peer => "peer",
        }
    }
}

/// Per (api, path) handles.
#[derive(Clone)]
pub struct ApiHandles {
    pub requests: IntCounter,
    pub duration: Histogram,
    /// Backend round-trip time for this API (`kelp_backend_request_duration_seconds`).
    pub backend: Histogram,
}

/// The registry and every metric.
pub struct Metrics {
    pub registry: Registry,
    api: HashMap<(i16, Path), ApiHandles>,
    pub request_errors: IntCounterVec,
    /// ConsumerGroupHeartbeat answers by error ("ok" for success).
    pub consumer_heartbeats: IntCounterVec,
    pub bytes_client_in: IntCounter,
    pub bytes_client_out: IntCounter,
    pub bytes_backend_in: IntCounter,
    pub bytes_backend_out: IntCounter,
    pub connections_active: IntGaugeVec,
    pub connections_total: IntCounterVec,
    pub connection_errors: IntCounterVec,
    pub backend_up: IntGauge,
    pub backend_duration: HistogramVec,
    pub config_reloads: IntCounterVec,
    /// `kelp_config_last_reload_successful`: 0 while the config file on disk is refused.
    pub config_last_reload_ok: IntGauge,
    pub groups: group::GroupMetrics,
    /// Consumer lag per group and the lag poller's own series.
    pub lag: lag::LagMetrics,
    /// `kelp_peers{state}`: peers (this kelp included) by `live` / `down`.
    pub peers: IntGaugeVec,
    /// `kelp_peer_view_changes_total`: changes of the live peer set.
    pub peer_view_changes: IntCounter,
    /// `kelp_group_ownership_moves_total{direction}`: groups adopted (`in`) and released (`out`).
    pub ownership_moves: IntCounterVec,
    /// Ownership leases (`lease.rs`).
    pub lease: lease::LeaseMetrics,
    /// `kelp_authorization_denied_total{api,resource}` (`src/access/`).
    pub authorization_denied: IntCounterVec,
}

fn api_name(api: ApiKey) -> String {
    format!("{api:?}")
}

impl Metrics {
    /// Metrics with the default per-group limits (1000 tracked groups, idle series kept an hour).
    pub fn new() -> Self {
        Self::with_group_limits(1000, Duration::from_secs(3600))
    }

    /// Metrics tracking at most `max_tracked_groups` groups by name, removing the series of a group
    /// Empty for longer than `idle_removal`.
    pub fn with_group_limits(max_tracked_groups: usize, idle_removal: Duration) -> Self {
        let registry = Registry::new();
        let groups = group::GroupMetrics::new(&registry, max_tracked_groups, idle_removal);
        let lag = lag::LagMetrics::new(&registry);
        let requests = IntCounterVec::new(
            Opts::new(
                "kelp_requests_total",
                "Requests received, by API and where they were served",
            ),
            &["api", "path"],
        )
        .expect("static metric");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "kelp_request_duration_seconds",
                "Time from request read to response ready (parked JoinGroup/SyncGroup excluded)",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5, 5.0,
            ]),
            &["api", "path"],
        )
        .expect("static metric");
        let backend_duration = HistogramVec::new(
            HistogramOpts::new(
                "kelp_backend_request_duration_seconds",
                "Time from forwarding a request to the backend's response",
            )
            .buckets(prometheus::exponential_buckets(0.0001, 2.5, 14).expect("static buckets")),
            &["api"],
        )
        .expect("static metric");
        let mut api = HashMap::new();
        for key in ApiKey::iter().filter(|k| kelp_range(*k).is_some()) {
            let name = api_name(key);
            for path in Path::ALL {
                let handles = ApiHandles {
                    requests: requests.with_label_values(&[&name, path.as_str()]),
                    duration: duration.with_label_values(&[&name, path.as_str()]),
                    backend: backend_duration.with_label_values(&[&name]),
                };
                api.insert((key as i16, path), handles);
            }
        }
        let bytes = IntCounterVec::new(
            Opts::new("kelp_bytes_total", "Bytes moved, by direction"),
            &["direction"],
        )
        .expect("static metric");
        let m = Metrics {
            api,
            request_errors: IntCounterVec::new(
                Opts::new(
                    "kelp_request_errors_total",
                    "Local answers carrying a Kafka error, by API and error",
                ),
                &["api", "error"],
            )
            .expect("static metric"),
            consumer_heartbeats: IntCounterVec::new(
                Opts::new(
                    "kelp_consumer_heartbeats_total",
                    "ConsumerGroupHeartbeat answers (KIP-848), by error (ok for success)",
                ),
                &["error"],
            )
            .expect("static metric"),
            bytes_client_in: bytes.with_label_values(&["client_in"]),
            bytes_client_out: bytes.with_label_values(&["client_out"]),
            bytes_backend_in: bytes.with_label_values(&["backend_in"]),
            bytes_backend_out: bytes.with_label_values(&["backend_out"]),
            connections_active: IntGaugeVec::new(
                Opts::new("kelp_connections_active", "Open connections, by listener"),
                &["listener"],
            )
            .expect("static metric"),
            connections_total: IntCounterVec::new(
                Opts::new(
                    "kelp_connections_total",
                    "Accepted connections, by listener",
                ),
                &["listener"],
            )
            .expect("static metric"),
            connection_errors: IntCounterVec::new(
                Opts::new(
                    "kelp_connection_errors_total",
                    "Connections closed because of an error, by reason",
                ),
                &["reason"],
            )
            .expect("static metric"),
            backend_up: IntGauge::new(
                "kelp_backend_up",
                "1 when the backend answered the last ApiVersions",
            )
            .expect("static metric"),
            backend_duration,
            config_reloads: IntCounterVec::new(
                Opts::new(
                    "kelp_config_reloads_total",
                    "Configuration reloads, by result",
                ),
                &["result"],
            )
            .expect("static metric"),
            config_last_reload_ok: IntGauge::new(
                "kelp_config_last_reload_successful",
                "1 when the config in effect is the file on disk (or there is no file), 0 after a refused reload",
            )
            .expect("static metric"),
            peers: IntGaugeVec::new(
                Opts::new("kelp_peers", "Peers this kelp knows of (itself included), by state"),
                &["state"],
            )
            .expect("static metric"),
            peer_view_changes: IntCounter::new(
                "kelp_peer_view_changes_total",
                "Changes of the set of live peers",
            )
            .expect("static metric"),
            ownership_moves: IntCounterVec::new(
                Opts::new(
                    "kelp_group_ownership_moves_total",
                    "Groups this kelp took over from the store (in) or gave up to another peer (out)",
                ),
                &["direction"],
            )
            .expect("static metric"),
            lease: lease::LeaseMetrics::new(&registry),
            authorization_denied: crate::access::denied_counter(&registry),
            registry,
            groups,
            lag,
        };
        let build_info = IntGaugeVec::new(
            Opts::new("kelp_build_info", "Build information; always 1"),
            &["version"],
        )
        .expect("static metric");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        for collector in [
            Box::new(requests) as Box<dyn prometheus::core::Collector>,
            Box::new(duration),
            Box::new(bytes),
            Box::new(m.request_errors.clone()),
            Box::new(m.consumer_heartbeats.clone()),
            Box::new(m.connections_active.clone()),
            Box::new(m.connections_total.clone()),
            Box::new(m.connection_errors.clone()),
            Box::new(m.backend_up.clone()),
            Box::new(m.backend_duration.clone()),
            Box::new(m.config_reloads.clone()),
            Box::new(m.config_last_reload_ok.clone()),
            Box::new(m.peers.clone()),
            Box::new(m.peer_view_changes.clone()),
            Box::new(m.ownership_moves.clone()),
            Box::new(build_info),
        ] {
            m.registry.register(collector).expect("unique metric names");
        }
        for result in ["ok", "error"] {
            m.config_reloads.with_label_values(&[result]);
        }
        m.config_last_reload_ok.set(1);
        // A kelp without peers is a mesh of one (the peer watch sets these when there are peers).
        m.peers.with_label_values(&["live"]).set(1);
        m.peers.with_label_values(&["down"]).set(0);
        for direction in ["in", "out"] {
            m.ownership_moves.with_label_values(&[direction]);
        }
        m
    }

    /// The handles for one API served on one path (None for APIs kelp does not handle).
    pub fn api(&self, api: ApiKey, path: Path) -> Option<&ApiHandles> {
        self.api.get(&(api as i16, path))
    }

    /// Counts a connection closed because of an error.
    pub fn connection_error(&self, reason: &str) {
        self.connection_errors.with_label_values(&[reason]).inc();
    }

    /// Applies a local coordinator event to the per-group series.
    pub fn group_event(&self, event: &crate::group::Event) {
        self.groups.apply(event, "local");
        if let crate::group::Event::GroupReleased { group }
        | crate::group::Event::GroupDeleted { group } = event
        {
            self.lag.forget(group);
        }
    }

    /// The text exposition of every metric (idle groups' series are dropped first).
    pub fn render(&self) -> Vec<u8> {
        self.groups.sweep();
        let mut out = Vec::with_capacity(16 * 1024);
        let families = self.registry.gather();
        if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
            tracing::error!(error = %e, "metrics encoding failed");
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_are_snake_case_kafka_names() {
        assert_eq!(error_name(0), "ok");
        assert_eq!(error_name(22), "illegal_generation");
        assert_eq!(error_name(25), "unknown_member_id");
        assert_eq!(error_name(27), "rebalance_in_progress");
        assert_eq!(error_name(-1), "unknown_server_error");
        assert_eq!(error_name(9999), "error_9999");
    }

    #[test]
    fn render_includes_proxy_and_build_metrics() {
        let m = Metrics::new();
        m.connection_error("frame_too_large");
        let text = String::from_utf8(m.render()).unwrap();
        assert!(text.contains(r#"kelp_connection_errors_total{reason="frame_too_large"} 1"#));
        assert!(text.contains("kelp_build_info{version="));
        assert!(text.contains(r#"kelp_config_reloads_total{result="error"} 0"#));
    }
}
