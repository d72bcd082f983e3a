//! kelp's binary: configuration → listeners → tasks, and a clean exit on SIGTERM / Ctrl-C.

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use kafka_protocol::protocol::StrBytes;
use tokio::net::TcpListener;

use kelp::backend::{Backend, Identity};
use kelp::config::{Config, LogFormat};
use kelp::coordinator::GroupService;
use kelp::metrics::Metrics;
use kelp::modes::{Modes, OnChange};
use kelp::passthrough::Passthrough;
use kelp::server::Shared;

/// How often the config file is checked for changes.
const CONFIG_POLL: Duration = Duration::from_secs(2);

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn bind(addr: std::net::SocketAddr, flag: &str) -> TcpListener {
    match TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("kelp: cannot listen on {flag} {addr}: {e}");
            std::process::exit(2);
        }
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Parses the command line; a bad value exits with one line naming the flag (help and version print
/// as usual).
fn parse_config() -> Config {
    let config = match Config::try_parse() {
        Ok(config) => config,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            let text = e.to_string();
            let line = text.lines().next().unwrap_or("invalid arguments");
            eprintln!("kelp: {}", line.trim_start_matches("error: "));
            std::process::exit(2);
        }
    };
    if let Err(e) = config.validate() {
        eprintln!("kelp: {e}");
        std::process::exit(2);
    }
    config
}

fn main() {
    let config = parse_config();
    init_logging(config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("kelp: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    runtime.block_on(run(config));
    // Whatever still runs after the drain (connections past the drain time) is not waited for.
    runtime.shutdown_timeout(Duration::from_millis(200));
}

/// The filer store for offsets and group records (`--filer`), or none: then they stay in memory.
fn open_store(config: &Config) -> Option<Arc<dyn kelp::store::Store>> {
    let Some(url) = &config.filer else {
        tracing::warn!("no --filer: committed offsets and group records are kept in memory only and are lost when kelp stops");
        return None;
    };
    let mut filer = kelp::store::FilerConfig::new(url.clone());
    filer.prefix = config.store_prefix.clone();
    filer.owner = lease_owner(config);
    match kelp::store::FilerStore::new(filer) {
        Ok(store) => {
            tracing::info!(filer = %url, prefix = %config.store_prefix, "offsets and group records are kept in the filer");
            Some(Arc::new(store))
        }
        Err(e) => {
            eprintln!("kelp: --filer {url}: {e}");
            std::process::exit(2);
        }
    }
}

async fn run(mut config: Config) {
    let identity = Identity {
        node_id: config.node_id,
        host: StrBytes::from_string(config.advertised_host()),
        port: i32::from(config.advertised_port()),
    };
    let backend = Backend::with_tls(config.backend.clone(), backend_tls(&config));
    let metrics = Arc::new(Metrics::with_group_limits(
        config.max_tracked_groups,
        Duration::from_secs(config.group_metrics_idle_secs),
    ));
    let modes = match Modes::load(&config, metrics.clone()) {
        Ok((modes, file)) => {
            if let Some(file) = file {
                let explicit = Config::explicit_ids(std::env::args_os());
                let applied = file
                    .coordinator
                    .apply(&mut config, &|id| explicit.contains(id));
                if let Err(e) = config.validate() {
                    eprintln!("kelp: with the [coordinator] settings of --config: {e}");
                    std::process::exit(2);
                }
                if !applied.is_empty() {
                    tracing::info!(settings = %applied.join(", "), "coordinator settings from the config file");
                }
            }
            Arc::new(modes)
        }
        Err(e) => {
            eprintln!("kelp: {e}");
            std::process::exit(2);
        }
    };
    let client_listener = bind(config.listen, "--listen").await;
    let metrics_listener = bind(config.metrics_listen, "--metrics-listen").await;
    if let Err(e) = backend.refresh().await {
        tracing::warn!(backend = %backend.addr, error = %e, "backend not reachable yet; will keep trying");
    }
    tokio::spawn(backend.clone().watch(Duration::from_secs(10)));
    let store = open_store(&config);
    let client_tls = client_tls(&config);
    let peer_listener = match config.peer.peer_listen {
        Some(addr) if config.peer.enabled() => Some(bind(addr, "--peer-listen").await),
        _ => None,
    };
    let peers = start_peers(&config, &metrics).await;
    // Topic ids for the gateway's topics (src/topics/): Metadata v8+ and the consumer groups.
    let topic_ids = match kelp::topics::TopicIds::new(
        backend.clone(),
        config.filer.as_deref(),
        Duration::from_millis(config.topic_metadata_interval_ms),
        &metrics.registry,
    ) {
        Ok(ids) => ids,
        Err(e) => {
            eprintln!("kelp: {e}");
            std::process::exit(2);
        }
    };
    tokio::spawn(topic_ids.clone().run());
    let groups = match &store {
        Some(store) => {
            let (peers, leases, wait) = start_leases(&config, peers.as_ref(), &metrics);
            GroupService::spawn_sharded(
                config.group_config(),
                metrics.clone(),
                store.clone(),
                peers,
                leases,
                wait,
            )
        }
        None => GroupService::spawn_with_store(config.group_config(), metrics.clone(), None),
    };
    // Consumer groups (KIP-848) assign from the topic table, and ask for it early when a member
    // subscribes to a topic it lacks.
    groups.feed_topics(kelp::coordinator::TopicFeed {
        updates: topic_ids.subscribe(),
        refresh: {
            let ids = topic_ids.clone();
            Arc::new(move || ids.refresh_soon())
        },
    });
    let routing = Arc::new(kelp::passthrough::Routing {
        groups,
        backend,
        passthrough: Arc::new(Passthrough::new(
            metrics.clone(),
            store,
            modes.path().is_some(),
        )),
        modes,
        peers: peers.as_ref().map(|side| side.peers.clone()),
    });
    let shared = Arc::new(Shared {
        routing,
        peers,
        identity,
        metrics,
        config,
        shutdown: kelp::shutdown::Shutdown::new(),
        client_tls,
        topic_ids,
    });
    let on_change: OnChange = {
        let shared = shared.clone();
        Arc::new(move |old, new| {
            let shared = shared.clone();
            Box::pin(async move {
                let routing = &shared.routing;
                routing
                    .passthrough
                    .on_reload(&routing.groups, &old, &new)
                    .await
            })
        })
    };
    if shared.modes().path().is_some() {
        let routing = shared.routing.clone();
        tokio::spawn(async move {
            let rules = routing.modes.snapshot();
            routing.passthrough.on_start(&routing.groups, &rules).await
        });
    }
    tokio::spawn(kelp::modes::watch(
        shared.modes().clone(),
        CONFIG_POLL,
        on_change,
    ));
    tracing::info!(
        listen = %shared.config.listen,
        backend = %shared.backend().addr,
        metrics = %shared.config.metrics_listen,
        advertised = %format!("{}:{}", shared.identity.host, shared.identity.port),
        "kelp started"
    );
    watch_tls(&shared);
    let lag = kelp::lag::Lag::new(shared.config.lag_settings());
    tokio::spawn(kelp::lag::run(
        lag.clone(),
        kelp::lag::Sources {
            groups: shared.groups().clone(),
            passthrough: shared.routing.passthrough.clone(),
            backend: shared.backend().clone(),
            metrics: shared.metrics.clone(),
            peers: shared.peers.as_ref().map(|side| side.peers.clone()),
        },
    ));
    tokio::spawn(kelp::http::serve(metrics_listener, shared.clone(), lag));
    if let Some(listener) = peer_listener {
        tokio::spawn(kelp::server::serve_peers(listener, shared.clone()));
    }
    tokio::spawn(kelp::server::serve(client_listener, shared.clone()));
    shutdown_signal().await;
    drain(&shared).await;
}

/// This kelp's name in the filer's lock service and epoch markers: its peer address, or (alone)
/// its advertised client address.
fn lease_owner(config: &Config) -> String {
    config
        .peer
        .advertised()
        .filter(|_| config.peer.enabled())
        .unwrap_or_else(|| format!("{}:{}", config.advertised_host(), config.advertised_port()))
}

/// With `--filer`: ownership leases on the filer's lock service (issue 15), one per bucket of
/// group ids, taken for the buckets the peer view prefers this kelp for (all of them without
/// peers). Returns the view, the lease table and how long a call may wait for a lease.
fn start_leases(
    config: &Config,
    side: Option<&kelp::server::PeerSide>,
    metrics: &Arc<Metrics>,
) -> (Arc<kelp::peers::Peers>, Arc<kelp::lease::Leases>, Duration) {
    use kelp::lease::{DriverConfig, Leases, LockClient, Timing};
    let ttl = Duration::from_secs(config.lease_ttl_secs);
    let timing = Timing::from_ttl(ttl);
    let peers = match side {
        Some(side) => side.peers.clone(),
        None => kelp::peers::Peers::with_buckets(
            lease_owner(config),
            Duration::from_millis(config.peer.peer_probe_interval_ms),
            config.lease_buckets,
        ),
    };
    let Some(url) = config.filer_grpc_url() else {
        eprintln!(
            "kelp: --filer {:?}: cannot derive the filer's gRPC address; set --filer-grpc",
            config.filer
        );
        std::process::exit(2);
    };
    let client = LockClient::new(&url, lease_owner(config), timing.round).unwrap_or_else(|e| {
        eprintln!("kelp: --filer-grpc: {e}");
        std::process::exit(2);
    });
    let leases = Arc::new(Leases::new(config.lease_buckets));
    kelp::lease::spawn(
        DriverConfig {
            client,
            timing,
            namespace: format!("kelp{}", config.store_prefix.trim_end_matches('/')),
        },
        leases.clone(),
        peers.clone(),
        metrics.clone(),
    );
    tracing::info!(filer_grpc = %url, ttl_secs = config.lease_ttl_secs, buckets = config.lease_buckets, owner = %lease_owner(config), "groups are served under ownership leases in the filer's lock service");
    (peers, leases, ttl + Duration::from_secs(3))
}

/// With `--peers`/`--peer-dns`: the peers' view, probed once before kelp serves anything (bounded
/// by the probe timeout) and then every `--peer-probe-interval-ms`.
async fn start_peers(config: &Config, metrics: &Arc<Metrics>) -> Option<kelp::server::PeerSide> {
    use kelp::peers::{link::Dialer, Dns, NetProbe, Peers, Resolve, Static, Watch};
    let flags = &config.peer;
    if !flags.enabled() {
        return None;
    }
    let me = flags.advertised()?;
    let probe_every = Duration::from_millis(flags.peer_probe_interval_ms);
    let peers = Peers::with_buckets(me.clone(), probe_every, config.lease_buckets);
    let resolver: Box<dyn Resolve> = match &flags.peer_dns {
        Some(name) => Box::new(Dns(name.clone())),
        None => Box::new(Static(flags.peers.clone())),
    };
    let (server_tls, client_tls) = peer_tls(config);
    let dialer = Arc::new(Dialer { tls: client_tls });
    let probe = Arc::new(NetProbe::new(
        dialer.clone(),
        probe_every.max(Duration::from_secs(1)),
    ));
    let mut watch = Watch::new(
        peers.clone(),
        resolver,
        probe,
        metrics.clone(),
        probe_every,
        Duration::from_millis(flags.peer_dns_interval_ms),
    );
    watch.round().await;
    tracing::info!(me = %me, live = ?peers.view().live, "peers: groups are coordinated by their owner among the live peers");
    let exposed = flags.peer_listen.is_some_and(|a| !a.ip().is_loopback());
    if exposed && server_tls.is_none() {
        tracing::warn!(peer_listen = ?flags.peer_listen, "the peer listener is reachable beyond loopback without TLS: restrict it to the peers (the NetworkPolicy in deploy/) or set --peer-tls-cert/--peer-tls-key/--peer-tls-ca");
    }
    tokio::spawn(watch.run());
    Some(kelp::server::PeerSide {
        peers,
        dialer,
        tls: server_tls,
    })
}

/// Mutual TLS between peers from `--peer-tls-cert`/`--peer-tls-key`/`--peer-tls-ca`: the peer
/// listener requires a certificate the CA signed, and kelp presents its own to the peers. A file
/// that does not load stops kelp at startup with one line naming it.
fn peer_tls(
    config: &Config,
) -> (
    Option<Arc<kelp::tls::Reloading<rustls::ServerConfig>>>,
    Option<kelp::peers::link::PeerTls>,
) {
    let flags = &config.peer;
    let (Some(cert), Some(key), Some(ca)) = (
        flags.peer_tls_cert.clone(),
        flags.peer_tls_key.clone(),
        flags.peer_tls_ca.clone(),
    ) else {
        return (None, None);
    };
    let fail = |e: kelp::tls::TlsError| -> ! {
        eprintln!("kelp: --peer-tls-cert/--peer-tls-key/--peer-tls-ca: {e}");
        std::process::exit(2);
    };
    let paths = vec![cert.clone(), key.clone(), ca.clone()];
    let server = {
        let (cert, key, ca) = (cert.clone(), key.clone(), ca.clone());
        let load = move || kelp::tls::server_config(&cert, &key, Some(&ca));
        kelp::tls::Reloading::new("peer_listener", paths.clone(), load).unwrap_or_else(|e| fail(e))
    };
    let client = {
        let load = move || kelp::tls::client_config(&ca, Some((cert.as_path(), key.as_path())));
        kelp::tls::Reloading::new("peer", paths, load).unwrap_or_else(|e| fail(e))
    };
    let server_name =
        flags.peer_tls_server_name.as_ref().map(
            |name| match rustls_pki_types::ServerName::try_from(name.as_str()) {
                Ok(name) => name.to_owned(),
                Err(e) => {
                    eprintln!("kelp: --peer-tls-server-name {name:?}: {e}");
                    std::process::exit(2);
                }
            },
        );
    (
        Some(Arc::new(server)),
        Some(kelp::peers::link::PeerTls {
            config: Arc::new(client),
            server_name,
        }),
    )
}

/// TLS on the client listener from `--tls-cert`/`--tls-key` (and `--tls-client-ca`); a file that
/// does not load stops kelp at startup with one line naming it.
fn client_tls(config: &Config) -> Option<Arc<kelp::tls::Reloading<rustls::ServerConfig>>> {
    let flags = &config.tls;
    let (cert, key) = (flags.tls_cert.clone()?, flags.tls_key.clone()?);
    let ca = flags.tls_client_ca.clone();
    let mut paths = vec![cert.clone(), key.clone()];
    paths.extend(ca.clone());
    let load = move || kelp::tls::server_config(&cert, &key, ca.as_deref());
    match kelp::tls::Reloading::new("client", paths, load) {
        Ok(tls) => Some(Arc::new(tls)),
        Err(e) => {
            eprintln!("kelp: --tls-cert/--tls-key/--tls-client-ca: {e}");
            std::process::exit(2);
        }
    }
}

/// TLS to the backend from `--backend-tls-ca` (and `--backend-tls-cert`/`--backend-tls-key`).
fn backend_tls(config: &Config) -> Option<kelp::backend::BackendTls> {
    let flags = &config.tls;
    let ca = flags.backend_tls_ca.clone()?;
    let identity = flags
        .backend_tls_cert
        .clone()
        .zip(flags.backend_tls_key.clone());
    let host = match &flags.backend_tls_server_name {
        Some(name) => name.clone(),
        None => config
            .backend
            .rsplit_once(':')
            .map_or(config.backend.clone(), |(h, _)| h.to_string()),
    };
    let server_name = match rustls_pki_types::ServerName::try_from(host.trim_matches(['[', ']'])) {
        Ok(name) => name.to_owned(),
        Err(e) => {
            eprintln!("kelp: --backend-tls-server-name {host:?}: {e}");
            std::process::exit(2);
        }
    };
    let mut paths = vec![ca.clone()];
    if let Some((cert, key)) = &identity {
        paths.extend([cert.clone(), key.clone()]);
    }
    let load = move || {
        let identity = identity.as_ref().map(|(c, k)| (c.as_path(), k.as_path()));
        kelp::tls::client_config(&ca, identity)
    };
    match kelp::tls::Reloading::new("backend", paths, load) {
        Ok(tls) => Some(kelp::backend::BackendTls {
            config: Arc::new(tls),
            server_name,
        }),
        Err(e) => {
            eprintln!("kelp: --backend-tls-ca/--backend-tls-cert/--backend-tls-key: {e}");
            std::process::exit(2);
        }
    }
}

/// Re-reads the TLS files every `--tls-reload-secs` (a rotated certificate is used for new
/// connections; a bad change keeps the old one).
fn watch_tls(shared: &Arc<Shared>) {
    let reloads = kelp::tls::reload_counter(&shared.metrics.registry);
    let every = Duration::from_secs(shared.config.tls.tls_reload_secs);
    if let Some(tls) = &shared.client_tls {
        tokio::spawn(tls.clone().watch(every, reloads.clone()));
    }
    if let Some(tls) = shared.backend().tls() {
        tokio::spawn(tls.config.clone().watch(every, reloads.clone()));
    }
    if let Some(side) = &shared.peers {
        if let Some(tls) = &side.tls {
            tokio::spawn(tls.clone().watch(every, reloads.clone()));
        }
        if let Some(tls) = &side.dialer.tls {
            tokio::spawn(tls.config.clone().watch(every, reloads));
        }
    }
}

/// SIGTERM / Ctrl-C: stop accepting, let every connection answer what it has in flight and close,
/// and return once none is left or `--drain-timeout-ms` has passed. A second signal ends it at once.
async fn drain(shared: &Shared) {
    let timeout = Duration::from_millis(shared.config.limits.drain_timeout_ms);
    tracing::info!(
        connections = shared.shutdown.live(),
        drain_timeout_ms = shared.config.limits.drain_timeout_ms,
        "shutting down: draining connections"
    );
    shared.shutdown.begin();
    let left = tokio::select! {
        left = shared.shutdown.wait_idle(timeout) => left,
        _ = shutdown_signal() => {
            tracing::warn!("second signal: exiting without waiting for connections");
            shared.shutdown.live()
        }
    };
    if left == 0 {
        tracing::info!("drained; exiting");
    } else {
        tracing::warn!(
            connections = left,
            "drain time is up; exiting with connections still open"
        );
    }
}
