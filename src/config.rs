//! Command-line and environment configuration (clap derive; every flag also reads `KELP_*`).
//! Validation happens here so that a bad value fails at startup with one line naming the flag.

use std::collections::HashSet;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{CommandFactory, Parser, ValueEnum};

/// Where group requests go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GroupMode {
    /// kelp's own classic group coordinator answers them.
    Local,
    /// They are forwarded untouched to the gateway's coordinator.
    Passthrough,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// kelp: a Kafka-protocol sidecar in front of the SeaweedFS Kafka gateway. It serves the consumer-group
/// APIs itself and forwards everything else.
#[derive(Debug, Clone, Parser)]
#[command(name = "kelp", version, about, long_about = None)]
pub struct Config {
    /// Client listener (host:port). Clients put this in bootstrap.servers.
    #[arg(long, env = "KELP_LISTEN", default_value = "127.0.0.1:9092")]
    pub listen: SocketAddr,

    /// Host name kelp advertises to clients in Metadata and FindCoordinator (default: the listen IP).
    #[arg(long, env = "KELP_ADVERTISED_HOST")]
    pub advertised_host: Option<String>,

    /// Port kelp advertises (default: the listen port).
    #[arg(long, env = "KELP_ADVERTISED_PORT")]
    pub advertised_port: Option<u16>,

    /// The SeaweedFS Kafka gateway (host:port) that non-group requests are forwarded to.
    #[arg(long, env = "KELP_BACKEND", default_value = "127.0.0.1:9093")]
    pub backend: String,

    /// Node id kelp presents as its broker id (Metadata, FindCoordinator, DescribeCluster).
    #[arg(long, env = "KELP_NODE_ID", default_value_t = 0, value_parser = clap::value_parser!(i32).range(0..))]
    pub node_id: i32,

    /// Largest request or response frame accepted, in bytes; a bigger one closes that connection.
    #[arg(long, env = "KELP_MAX_FRAME_BYTES", default_value_t = 100 * 1024 * 1024,
          value_parser = clap::value_parser!(u32).range(1024..=1_073_741_824))]
    pub max_frame_bytes: u32,

    /// Log format: text or json (level from RUST_LOG, default info).
    #[arg(long, env = "KELP_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// HTTP listener for /metrics, /healthz and /readyz.
    #[arg(long, env = "KELP_METRICS_LISTEN", default_value = "127.0.0.1:9100")]
    pub metrics_listen: SocketAddr,

    /// Who coordinates consumer groups: kelp (local) or the gateway (passthrough). With --config,
    /// the mode of groups the file's rules do not match, unless the file sets `default_mode`.
    #[arg(long, env = "KELP_GROUP_MODE", value_enum, default_value = "local")]
    pub group_mode: GroupMode,

    /// TOML config file: per-group mode rules (reloaded on SIGHUP and when the file changes) and
    /// coordinator settings (read at startup). See docs/MIGRATION.md.
    #[arg(long, env = "KELP_CONFIG")]
    pub config: Option<PathBuf>,

    /// Smallest session.timeout.ms a JoinGroup may ask for (group.min.session.timeout.ms).
    #[arg(long, env = "KELP_GROUP_MIN_SESSION_TIMEOUT_MS", default_value_t = 6000,
          value_parser = clap::value_parser!(i32).range(1..))]
    pub group_min_session_timeout_ms: i32,

    /// Largest session.timeout.ms a JoinGroup may ask for (group.max.session.timeout.ms).
    #[arg(long, env = "KELP_GROUP_MAX_SESSION_TIMEOUT_MS", default_value_t = 1_800_000,
          value_parser = clap::value_parser!(i32).range(1..))]
    pub group_max_session_timeout_ms: i32,

    /// Delay before the first rebalance of an empty group completes (group.initial.rebalance.delay.ms).
    #[arg(long, env = "KELP_GROUP_INITIAL_REBALANCE_DELAY_MS", default_value_t = 3000,
          value_parser = clap::value_parser!(i32).range(0..))]
    pub group_initial_rebalance_delay_ms: i32,

    /// Most members a group may have (group.max.size).
    #[arg(long, env = "KELP_GROUP_MAX_SIZE", default_value_t = i32::MAX as u64,
          value_parser = clap::value_parser!(u64).range(1..=i32::MAX as u64))]
    pub group_max_size: u64,

    /// Longest offset-commit metadata string accepted (offset.metadata.max.bytes).
    #[arg(long, env = "KELP_OFFSET_METADATA_MAX_BYTES", default_value_t = 4096)]
    pub offset_metadata_max_bytes: usize,

    /// How long committed offsets of an Empty group are kept, in minutes (offsets.retention.minutes).
    #[arg(long, env = "KELP_OFFSETS_RETENTION_MINUTES", default_value_t = 10080,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub offsets_retention_minutes: u64,

    /// Consumer groups (KIP-848): a member that sends no heartbeat for this long is removed
    /// (group.consumer.session.timeout.ms).
    #[arg(long, env = "KELP_GROUP_CONSUMER_SESSION_TIMEOUT_MS", default_value_t = 45_000,
          value_parser = clap::value_parser!(i32).range(1..))]
    pub group_consumer_session_timeout_ms: i32,

    /// Consumer groups (KIP-848): the heartbeat interval the coordinator gives its members
    /// (group.consumer.heartbeat.interval.ms); below the session timeout.
    #[arg(long, env = "KELP_GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS", default_value_t = 5000,
          value_parser = clap::value_parser!(i32).range(1..))]
    pub group_consumer_heartbeat_interval_ms: i32,

    /// Consumer groups (KIP-848): most members a group may have (group.consumer.max.size).
    #[arg(long, env = "KELP_GROUP_CONSUMER_MAX_SIZE", default_value_t = i32::MAX as u64,
          value_parser = clap::value_parser!(u64).range(1..=i32::MAX as u64))]
    pub group_consumer_max_size: u64,

    /// Consumer groups (KIP-848): the server-side assignors offered, the first the default
    /// (group.consumer.assignors; `uniform`, `range`). A member picks one with
    /// group.remote.assignor.
    #[arg(
        long,
        env = "KELP_GROUP_CONSUMER_ASSIGNORS",
        value_delimiter = ',',
        default_value = "uniform,range"
    )]
    pub group_consumer_assignors: Vec<String>,

    /// Classic ↔ consumer group conversion (group.consumer.migration.policy): `bidirectional`,
    /// `upgrade` (a consumer-protocol member may join a classic group, converting it), `downgrade`
    /// (a consumer group whose last consumer-protocol member left becomes classic), `disabled`.
    #[arg(
        long,
        env = "KELP_GROUP_CONSUMER_MIGRATION_POLICY",
        default_value = "bidirectional"
    )]
    pub group_consumer_migration_policy: String,

    /// SeaweedFS filer URL (http://host:port) where committed offsets and group records are kept.
    /// Without it they are kept in memory only and lost when kelp stops.
    #[arg(long, env = "KELP_FILER")]
    pub filer: Option<String>,

    /// kelp's directory in the filer.
    #[arg(long, env = "KELP_STORE_PREFIX", default_value = "/kelp")]
    pub store_prefix: String,

    /// The filer's gRPC address (http://host:port) for its lock service (ownership leases).
    /// Default: --filer's host with its port + 10000, SeaweedFS's convention.
    #[arg(long, env = "KELP_FILER_GRPC")]
    pub filer_grpc: Option<String>,

    /// Seconds an ownership lease lasts in the filer (renewed every quarter of it; a kelp stops
    /// serving a quarter of it before it runs out).
    #[arg(long, env = "KELP_LEASE_TTL_SECS", default_value_t = crate::lease::DEFAULT_TTL_SECS,
          value_parser = clap::value_parser!(u64).range(1..=600))]
    pub lease_ttl_secs: u64,

    /// Buckets the group ids hash into, one ownership lease each. Every kelp on one
    /// --store-prefix must use the same number.
    #[arg(long, env = "KELP_LEASE_BUCKETS", default_value_t = crate::lease::DEFAULT_BUCKETS,
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub lease_buckets: u32,

    /// Milliseconds between reads of every topic (Metadata from the gateway) for the topic-id
    /// table the consumer groups assign from; a heartbeat naming an unknown topic asks sooner.
    #[arg(long, env = "KELP_TOPIC_METADATA_INTERVAL_MS", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub topic_metadata_interval_ms: u64,

    /// Most groups with their own metric series; the rest are summed under group="__other__".
    #[arg(long, env = "KELP_MAX_TRACKED_GROUPS", default_value_t = 1000)]
    pub max_tracked_groups: usize,

    /// Seconds an Empty group keeps its metric series before they are removed.
    #[arg(long, env = "KELP_GROUP_METRICS_IDLE_SECS", default_value_t = 3600)]
    pub group_metrics_idle_secs: u64,

    /// Seconds between consumer-lag rounds: one ListOffsets (latest) to the gateway per topic set.
    #[arg(long, env = "KELP_LAG_INTERVAL_SECS", default_value_t = 15,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub lag_interval_secs: u64,

    /// Seconds of lag history a group's status looks at (`warning`: lag rising through the whole
    /// window; `stalled`: commits not moving through it).
    #[arg(long, env = "KELP_LAG_WINDOW_SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub lag_window_secs: u64,

    /// Also export kelp_group_lag_partition{group,topic,partition} (one series per partition).
    #[arg(long, env = "KELP_LAG_PARTITION_METRICS", default_value_t = false)]
    pub lag_partition_metrics: bool,

    /// Connection limit and shutdown drain.
    #[command(flatten)]
    pub limits: Limits,

    /// TLS on the client listener and to the backend.
    #[command(flatten)]
    pub tls: TlsFlags,

    /// Several kelps, one coordinator per group (README §5).
    #[command(flatten)]
    pub peer: PeerFlags,
}

impl Config {
    /// Checks what clap cannot check field by field.
    pub fn validate(&self) -> Result<(), String> {
        if self.group_min_session_timeout_ms > self.group_max_session_timeout_ms {
            return Err(format!(
                "--group-min-session-timeout-ms ({}) is above --group-max-session-timeout-ms ({})",
                self.group_min_session_timeout_ms, self.group_max_session_timeout_ms
            ));
        }
        if self.group_consumer_heartbeat_interval_ms >= self.group_consumer_session_timeout_ms {
            return Err(format!(
                "--group-consumer-heartbeat-interval-ms ({}) must be below --group-consumer-session-timeout-ms ({})",
                self.group_consumer_heartbeat_interval_ms, self.group_consumer_session_timeout_ms
            ));
        }
        if self.group_consumer_assignors.is_empty() {
            return Err("--group-consumer-assignors names no assignor".into());
        }
        if let Some(bad) = self
            .group_consumer_assignors
            .iter()
            .find(|a| crate::group::consumer::Assignor::by_name(a).is_none())
        {
            return Err(format!(
                "--group-consumer-assignors: unknown assignor {bad:?} (known: uniform, range)"
            ));
        }
        if crate::group::consumer::MigrationPolicy::parse(&self.group_consumer_migration_policy)
            .is_none()
        {
            return Err(format!(
                "--group-consumer-migration-policy {:?}: one of bidirectional, upgrade, downgrade, disabled",
                self.group_consumer_migration_policy
            ));
        }
        if self.backend.parse::<SocketAddr>().is_err() && !self.backend.contains(':') {
            return Err(format!("--backend {:?} is not host:port", self.backend));
        }
        if let Some(filer) = &self.filer {
            let host = filer.strip_prefix("http://").unwrap_or("");
            if host.is_empty() || host.starts_with('/') || host.contains(char::is_whitespace) {
                return Err(format!("--filer {filer:?} is not an http://host:port URL"));
            }
        }
        if let Some(grpc) = &self.filer_grpc {
            let host = grpc.strip_prefix("http://").unwrap_or("");
            if self.filer.is_none() {
                return Err("--filer-grpc needs --filer".into());
            }
            if host.is_empty() || host.starts_with('/') || !host.contains(':') {
                return Err(format!(
                    "--filer-grpc {grpc:?} is not an http://host:port URL"
                ));
            }
        }
        if !self.store_prefix.starts_with('/') || self.store_prefix.trim_matches('/').is_empty() {
            return Err(format!(
                "--store-prefix {:?} is not an absolute directory other than /",
                self.store_prefix
            ));
        }
        if let Some(host) = &self.advertised_host {
            if host.is_empty() || host.contains(char::is_whitespace) {
                return Err(format!("--advertised-host {host:?} is not a host name"));
            }
        }
        self.tls.validate()?;
        self.peer.validate(self.filer.is_some())?;
        Ok(())
    }

    /// The filer's gRPC address: --filer-grpc, or --filer's port + 10000.
    pub fn filer_grpc_url(&self) -> Option<String> {
        if let Some(g) = &self.filer_grpc {
            return Some(g.clone());
        }
        let filer = self.filer.as_deref()?;
        let hostport = filer.strip_prefix("http://")?.trim_end_matches('/');
        let (host, port) = hostport.rsplit_once(':')?;
        let port: u32 = port.parse().ok()?;
        let grpc = u16::try_from(port + 10_000).ok()?;
        Some(format!("http://{host}:{grpc}"))
    }

    /// The host clients are told to connect to.
    pub fn advertised_host(&self) -> String {
        self.advertised_host
            .clone()
            .unwrap_or_else(|| self.listen.ip().to_string())
    }

    /// The port clients are told to connect to.
    pub fn advertised_port(&self) -> u16 {
        self.advertised_port.unwrap_or(self.listen.port())
    }

    /// The ids of the arguments (`group_max_size`, …) that `args` or the environment set explicitly,
    /// as opposed to their defaults. Config-file settings apply only to the others.
    pub fn explicit_ids<I, T>(args: I) -> HashSet<String>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let Ok(matches) = Config::command().try_get_matches_from(args) else {
            return HashSet::new();
        };
        matches
            .ids()
            .filter(|id| {
                matches!(
                    matches.value_source(id.as_str()),
                    Some(ValueSource::CommandLine | ValueSource::EnvVariable)
                )
            })
            .map(|id| id.as_str().to_string())
            .collect()
    }

    /// The lag poller's settings.
    pub fn lag_settings(&self) -> crate::lag::Settings {
        crate::lag::Settings {
            interval: std::time::Duration::from_secs(self.lag_interval_secs),
            window: std::time::Duration::from_secs(self.lag_window_secs),
            per_partition: self.lag_partition_metrics,
        }
    }

    /// The coordinator settings for the group state machine.
    pub fn group_config(&self) -> crate::group::Config {
        crate::group::Config {
            session_timeout_min_ms: self.group_min_session_timeout_ms,
            session_timeout_max_ms: self.group_max_session_timeout_ms,
            initial_rebalance_delay_ms: self.group_initial_rebalance_delay_ms,
            max_group_size: self.group_max_size as usize,
            offset_metadata_max_bytes: self.offset_metadata_max_bytes,
            offsets_retention_ms: self.offsets_retention_minutes.saturating_mul(60_000),
            consumer: crate::group::consumer::ConsumerConfig {
                session_timeout_ms: self.group_consumer_session_timeout_ms,
                heartbeat_interval_ms: self.group_consumer_heartbeat_interval_ms,
                max_size: self.group_consumer_max_size as usize,
                assignors: self
                    .group_consumer_assignors
                    .iter()
                    .filter_map(|a| crate::group::consumer::Assignor::by_name(a))
                    .collect(),
                migration_policy: crate::group::consumer::MigrationPolicy::parse(
                    &self.group_consumer_migration_policy,
                )
                .unwrap_or_default(),
                classic_max_size: self.group_max_size as usize,
            },
            ..crate::group::Config::default()
        }
    }
}

/// Peers: the other kelps a group's members may talk to (issue 7). Without `--peers` or
/// `--peer-dns` kelp coordinates every group it is asked about by itself.
#[derive(Debug, Clone, clap::Args)]
pub struct PeerFlags {
    /// Peer listener (host:port): other kelps forward the requests of groups this kelp owns here.
    /// Needs --peers or --peer-dns.
    #[arg(long, env = "KELP_PEER_LISTEN")]
    pub peer_listen: Option<SocketAddr>,

    /// Every kelp's peer address (host:port, comma-separated; this kelp's own may be listed).
    #[arg(long, env = "KELP_PEERS", value_delimiter = ',')]
    pub peers: Vec<String>,

    /// DNS name and port of the peers (a headless Service, name:port), re-resolved every
    /// --peer-dns-interval-ms.
    #[arg(long, env = "KELP_PEER_DNS")]
    pub peer_dns: Option<String>,

    /// This kelp's own peer address as the others list it (default: --peer-listen; needed when
    /// that listens on an unspecified address such as 0.0.0.0, e.g. $(POD_IP):9094).
    #[arg(long, env = "KELP_PEER_ADVERTISED")]
    pub peer_advertised: Option<String>,

    /// How often each peer is probed; a peer is down after two failed probes in a row.
    #[arg(long, env = "KELP_PEER_PROBE_INTERVAL_MS", default_value_t = 500,
          value_parser = clap::value_parser!(u64).range(50..=60_000))]
    pub peer_probe_interval_ms: u64,

    /// How often --peer-dns is resolved again.
    #[arg(long, env = "KELP_PEER_DNS_INTERVAL_MS", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub peer_dns_interval_ms: u64,

    /// Certificate chain (PEM) of this kelp for mutual TLS between peers: presented on the peer
    /// listener and when connecting to a peer. Needs --peer-tls-key and --peer-tls-ca.
    #[arg(long, env = "KELP_PEER_TLS_CERT")]
    pub peer_tls_cert: Option<PathBuf>,

    /// Private key (PEM) of --peer-tls-cert.
    #[arg(long, env = "KELP_PEER_TLS_KEY")]
    pub peer_tls_key: Option<PathBuf>,

    /// CA certificates (PEM) that sign every peer's certificate: the peer listener admits only
    /// connections presenting one, and kelp connects only to peers presenting one.
    #[arg(long, env = "KELP_PEER_TLS_CA")]
    pub peer_tls_ca: Option<PathBuf>,

    /// Name every peer's certificate carries (a SAN, e.g. the peers' Service name); default: the
    /// host part of the peer's address.
    #[arg(long, env = "KELP_PEER_TLS_SERVER_NAME")]
    pub peer_tls_server_name: Option<String>,
}

impl PeerFlags {
    /// Whether kelp shares groups with other kelps.
    pub fn enabled(&self) -> bool {
        !self.peers.is_empty() || self.peer_dns.is_some()
    }

    /// This kelp's identity among the peers.
    pub fn advertised(&self) -> Option<String> {
        self.peer_advertised
            .clone()
            .or_else(|| self.peer_listen.map(|a| a.to_string()))
    }

    fn validate(&self, durable: bool) -> Result<(), String> {
        let host_port = |flag: &str, v: &str| match v.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
            _ => Err(format!("{flag} {v:?} is not host:port")),
        };
        for p in &self.peers {
            host_port("--peers", p)?;
        }
        if let Some(dns) = &self.peer_dns {
            host_port("--peer-dns", dns)?;
        }
        if let Some(a) = &self.peer_advertised {
            host_port("--peer-advertised", a)?;
        }
        if !self.peers.is_empty() && self.peer_dns.is_some() {
            return Err("--peers and --peer-dns exclude each other".into());
        }
        let tls = [&self.peer_tls_cert, &self.peer_tls_key, &self.peer_tls_ca];
        let given = tls.iter().filter(|f| f.is_some()).count();
        if given != 0 && given != 3 {
            return Err("--peer-tls-cert, --peer-tls-key and --peer-tls-ca go together".into());
        }
        if self.peer_tls_server_name.is_some() && given == 0 {
            return Err(
                "--peer-tls-server-name needs --peer-tls-cert, --peer-tls-key and --peer-tls-ca"
                    .into(),
            );
        }
        if !self.enabled() {
            return match (&self.peer_listen, &self.peer_advertised) {
                (None, None) => Ok(()),
                _ => Err("--peer-listen and --peer-advertised need --peers or --peer-dns".into()),
            };
        }
        let Some(listen) = self.peer_listen else {
            return Err("--peers and --peer-dns need --peer-listen".into());
        };
        if listen.ip().is_unspecified() && self.peer_advertised.is_none() {
            return Err(format!(
                "--peer-listen {listen} is unspecified: set --peer-advertised to the address the other kelps list"
            ));
        }
        if !durable {
            return Err(
                "--peers and --peer-dns need --filer: a group's new owner loads it from there"
                    .into(),
            );
        }
        Ok(())
    }
}

/// Connection limit and shutdown drain (issue 11).
#[derive(Debug, Clone, clap::Args)]
pub struct Limits {
    /// Most client connections open at once; beyond it a new connection is closed at once, with a
    /// log line and kelp_connection_errors_total{reason="max_connections"}.
    #[arg(long, env = "KELP_MAX_CONNECTIONS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: u64,

    /// On SIGTERM: how long kelp lets connections answer what they have in flight before it exits.
    #[arg(long, env = "KELP_DRAIN_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(0..=3_600_000))]
    pub drain_timeout_ms: u64,
}

/// TLS settings (issue 11). Certificates and keys are PEM files, re-read when they change.
#[derive(Debug, Clone, clap::Args)]
pub struct TlsFlags {
    /// Certificate chain (PEM) for TLS on the client listener; needs --tls-key. Without it the
    /// client listener speaks plain TCP.
    #[arg(long, env = "KELP_TLS_CERT")]
    pub tls_cert: Option<std::path::PathBuf>,

    /// Private key (PEM) of --tls-cert.
    #[arg(long, env = "KELP_TLS_KEY")]
    pub tls_key: Option<std::path::PathBuf>,

    /// CA certificates (PEM): clients of the client listener must present a certificate they
    /// signed (mutual TLS). Needs --tls-cert.
    #[arg(long, env = "KELP_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<std::path::PathBuf>,

    /// CA certificates (PEM) that sign the backend's certificate: kelp then talks TLS to the backend.
    #[arg(long, env = "KELP_BACKEND_TLS_CA")]
    pub backend_tls_ca: Option<std::path::PathBuf>,

    /// Client certificate chain (PEM) kelp presents to the backend; needs --backend-tls-key.
    #[arg(long, env = "KELP_BACKEND_TLS_CERT")]
    pub backend_tls_cert: Option<std::path::PathBuf>,

    /// Private key (PEM) of --backend-tls-cert.
    #[arg(long, env = "KELP_BACKEND_TLS_KEY")]
    pub backend_tls_key: Option<std::path::PathBuf>,

    /// Name the backend's certificate must carry (default: the host of --backend).
    #[arg(long, env = "KELP_BACKEND_TLS_SERVER_NAME")]
    pub backend_tls_server_name: Option<String>,

    /// How often the certificate and key files are checked for changes, in seconds.
    #[arg(long, env = "KELP_TLS_RELOAD_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub tls_reload_secs: u64,
}

impl TlsFlags {
    fn validate(&self) -> Result<(), String> {
        let pair =
            |a: &Option<std::path::PathBuf>, b: &Option<std::path::PathBuf>, an: &str, bn: &str| {
                match (a.is_some(), b.is_some()) {
                    (true, false) => Err(format!("{an} needs {bn}")),
                    (false, true) => Err(format!("{bn} needs {an}")),
                    _ => Ok(()),
                }
            };
        pair(&self.tls_cert, &self.tls_key, "--tls-cert", "--tls-key")?;
        pair(
            &self.backend_tls_cert,
            &self.backend_tls_key,
            "--backend-tls-cert",
            "--backend-tls-key",
        )?;
        if self.tls_client_ca.is_some() && self.tls_cert.is_none() {
            return Err("--tls-client-ca needs --tls-cert and --tls-key".into());
        }
        let backend_extra =
            self.backend_tls_cert.is_some() || self.backend_tls_server_name.is_some();
        if backend_extra && self.backend_tls_ca.is_none() {
            return Err(
                "--backend-tls-cert and --backend-tls-server-name need --backend-tls-ca".into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, String> {
        let mut argv = vec!["kelp"];
        argv.extend_from_slice(args);
        let config = Config::try_parse_from(argv).map_err(|e| e.to_string())?;
        config.validate()?;
        Ok(config)
    }

    #[test]
    fn defaults_are_loopback() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.listen, "127.0.0.1:9092".parse().unwrap());
        assert_eq!(c.metrics_listen, "127.0.0.1:9100".parse().unwrap());
        assert_eq!(c.advertised_host(), "127.0.0.1");
        assert_eq!(c.advertised_port(), 9092);
        assert_eq!(c.group_initial_rebalance_delay_ms, 3000);
    }

    #[test]
    fn explicit_ids_are_the_flags_given() {
        let ids = Config::explicit_ids(["kelp", "--group-max-size", "5", "--config", "k.toml"]);
        assert!(ids.contains("group_max_size"), "{ids:?}");
        assert!(ids.contains("config"));
        assert!(!ids.contains("group_initial_rebalance_delay_ms"));
        let c = parse(&["--config", "/etc/kelp/kelp.toml"]).unwrap();
        assert_eq!(
            c.config.as_deref(),
            Some(std::path::Path::new("/etc/kelp/kelp.toml"))
        );
    }

    #[test]
    fn bad_values_name_the_flag() {
        let e = parse(&["--listen", "nope"]).unwrap_err();
        assert!(e.contains("--listen"), "{e}");
        let e = parse(&["--max-frame-bytes", "10"]).unwrap_err();
        assert!(e.contains("--max-frame-bytes"), "{e}");
        let e = parse(&["--log-format", "xml"]).unwrap_err();
        assert!(e.contains("--log-format"), "{e}");
        let e = parse(&["--backend", "nohost"]).unwrap_err();
        assert!(e.contains("--backend"), "{e}");
        let e = parse(&["--filer", "127.0.0.1:8888"]).unwrap_err();
        assert!(e.contains("--filer"), "{e}");
        let e = parse(&["--store-prefix", "kelp"]).unwrap_err();
        assert!(e.contains("--store-prefix"), "{e}");
        let c = parse(&["--filer", "http://127.0.0.1:8888"]).unwrap();
        assert_eq!(
            (c.filer.as_deref(), c.store_prefix.as_str()),
            (Some("http://127.0.0.1:8888"), "/kelp")
        );
        assert_eq!(
            c.filer_grpc_url().as_deref(),
            Some("http://127.0.0.1:18888"),
            "the filer's gRPC port is its HTTP port + 10000"
        );
        assert_eq!((c.lease_ttl_secs, c.lease_buckets), (2, 32));
        let c = parse(&[
            "--filer",
            "http://127.0.0.1:8888",
            "--filer-grpc",
            "http://127.0.0.1:9999",
        ])
        .unwrap();
        assert_eq!(c.filer_grpc_url().as_deref(), Some("http://127.0.0.1:9999"));
        let e = parse(&["--filer-grpc", "http://127.0.0.1:9999"]).unwrap_err();
        assert!(e.contains("--filer-grpc"), "{e}");
        let e = parse(&["--filer", "http://127.0.0.1:8888", "--lease-buckets", "0"]).unwrap_err();
        assert!(e.contains("lease-buckets"), "{e}");
        let e = parse(&[
            "--group-min-session-timeout-ms",
            "9000",
            "--group-max-session-timeout-ms",
            "8000",
        ])
        .unwrap_err();
        assert!(e.contains("--group-min-session-timeout-ms"), "{e}");
    }

    #[test]
    fn peers_need_a_listener_and_the_filer() {
        let filer = ["--filer", "http://127.0.0.1:8888"];
        let with = |extra: &[&str]| {
            let mut args = filer.to_vec();
            args.extend_from_slice(extra);
            parse(&args)
        };
        let c = with(&[
            "--peer-listen",
            "127.0.0.1:9094",
            "--peers",
            "127.0.0.1:9094,127.0.0.1:9095",
        ])
        .unwrap();
        assert!(c.peer.enabled());
        assert_eq!(c.peer.peers.len(), 2);
        assert_eq!(c.peer.advertised().as_deref(), Some("127.0.0.1:9094"));
        let e = with(&["--peers", "127.0.0.1:9094"]).unwrap_err();
        assert!(e.contains("--peer-listen"), "{e}");
        let e = parse(&[
            "--peer-listen",
            "127.0.0.1:9094",
            "--peers",
            "127.0.0.1:9094",
        ])
        .unwrap_err();
        assert!(e.contains("--filer"), "{e}");
        let e = with(&[
            "--peer-listen",
            "0.0.0.0:9094",
            "--peer-dns",
            "kelp-peers:9094",
        ])
        .unwrap_err();
        assert!(e.contains("--peer-advertised"), "{e}");
        let e = with(&["--peer-listen", "127.0.0.1:9094", "--peers", "nope"]).unwrap_err();
        assert!(e.contains("--peers"), "{e}");
        let e = with(&[
            "--peer-listen",
            "127.0.0.1:9094",
            "--peers",
            "a:1",
            "--peer-dns",
            "b:2",
        ])
        .unwrap_err();
        assert!(e.contains("exclude"), "{e}");
        let e = with(&["--peer-listen", "127.0.0.1:9094"]).unwrap_err();
        assert!(e.contains("need --peers"), "{e}");
        let peers = [
            "--peer-listen",
            "127.0.0.1:9094",
            "--peers",
            "127.0.0.1:9094",
        ];
        let mut args = peers.to_vec();
        args.extend(["--peer-tls-cert", "c.pem", "--peer-tls-key", "k.pem"]);
        let e = with(&args).unwrap_err();
        assert!(e.contains("go together"), "{e}");
        args.extend([
            "--peer-tls-ca",
            "ca.pem",
            "--peer-tls-server-name",
            "kelp-peers",
        ]);
        assert!(with(&args).is_ok());
    }
}
