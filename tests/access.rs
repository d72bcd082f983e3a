//! Access control (issue 18) with real parts: the real kelp binary in front of the real SeaweedFS
//! stack, real librdkafka clients (rdkafka) and confluent-kafka over mutual TLS.
//!
//! 1. a consumer whose group is not allowed gets a group authorization error and never joins,
//!    while an allowed group on the same kelp consumes; a produce to a topic the principal may
//!    see but not write fails with 29 and nothing reaches the gateway; Metadata lists only the
//!    topics the principal may describe;
//! 2. a reload that tightens a rule takes effect on the next request of an open connection;
//! 3. two mutual-TLS principals on one kelp see different topics in Metadata;
//! 4. in a mesh of two kelps, a client of one kelp cannot DeleteGroups a group the other kelp
//!    owns (refused by its own kelp before forwarding), while the owner still holds it.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use support::{
    committed, create_topic, metric, produce, produce_with, python_ok, scratch_dir, stack,
    wait_until, GroupConsumer, Kelp,
};

fn dir() -> PathBuf {
    let d = scratch_dir().join("access");
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write_config(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write config");
    std::fs::rename(&tmp, path).expect("replace config");
}

/// An allow rule for `principal`.
fn allow(principal: &str, resource: &str, name: &str, pattern: &str, ops: &[&str]) -> String {
    rule(principal, resource, name, pattern, ops, "allow")
}

fn rule(
    principal: &str,
    resource: &str,
    name: &str,
    pattern: &str,
    ops: &[&str],
    permission: &str,
) -> String {
    let ops: Vec<String> = ops.iter().map(|o| format!("{o:?}")).collect();
    format!(
        "[[access.rules]]\nprincipal = {principal:?}\nresource = {resource:?}\nname = {name:?}\n\
         pattern_type = {pattern:?}\noperations = [{}]\npermission = {permission:?}\n\n",
        ops.join(", ")
    )
}

/// A kelp with `config` as its `--config` file.
fn kelp_with(name: &str, config: &str, extra: &[&str]) -> (Kelp, PathBuf) {
    let path = dir().join(format!("{name}-{}.toml", std::process::id()));
    write_config(&path, config);
    let mut args = vec!["--config", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    (Kelp::start(&args), path)
}

fn denied(k: &Kelp, api: &str, resource: &str) -> f64 {
    metric(
        k,
        &format!("kelp_authorization_denied_total{{api=\"{api}\",resource=\"{resource}\"}}"),
    )
}

/// A kelp with no `[access]` section: it creates the tests' topics and reads what reached the
/// gateway.
fn open_kelp() -> &'static Kelp {
    static OPEN: std::sync::OnceLock<Kelp> = std::sync::OnceLock::new();
    OPEN.get_or_init(|| Kelp::start(&[]))
}

/// The high watermark of partition 0 of `topic` at the gateway (through a kelp without rules).
fn gateway_high_watermark(topic: &str) -> i64 {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", open_kelp().addr())
        .set("broker.address.family", "v4")
        .create()
        .expect("consumer");
    let (_, high) = c
        .fetch_watermarks(topic, 0, Duration::from_secs(15))
        .expect("watermarks from the gateway");
    high
}

fn topics_seen(bootstrap: &str) -> Vec<String> {
    let mut names: Vec<String> = support::metadata(bootstrap, None)
        .topics()
        .iter()
        .map(|t| t.name().to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn group_and_topic_rules_answer_real_clients_as_kafka_does() {
    let open = "acl-open-orders";
    let secret = "acl-secret";
    let hidden = "acl-hidden";
    for t in [open, secret, hidden] {
        create_topic(open_kelp().addr(), t, 1);
    }
    let anon = "User:ANONYMOUS";
    let config = format!(
        "[access]\n{}{}{}",
        allow(anon, "topic", "acl-open-", "prefixed", &["read", "write"]),
        allow(anon, "topic", secret, "literal", &["describe"]),
        allow(anon, "group", "team-a-", "prefixed", &["read"]),
    );
    let (k, _) = kelp_with("rules", &config, &[]);

    // Metadata: only what the principal may describe.
    let seen = topics_seen(k.addr());
    assert!(
        seen.contains(&open.to_string()) && seen.contains(&secret.to_string()),
        "{seen:?}"
    );
    assert!(!seen.contains(&hidden.to_string()), "{seen:?}");

    // Produce to a topic it may describe but not write: 29, and nothing reaches the gateway.
    let report = produce_with(k.addr(), secret, 5, &[("message.timeout.ms", "20000")]);
    assert_eq!(report.acked, 0, "{report:?}");
    assert!(
        report
            .errors
            .iter()
            .any(|e| e.contains("Topic authorization failed")),
        "{:?}",
        report.errors
    );
    assert_eq!(
        gateway_high_watermark(secret),
        0,
        "nothing reached the gateway"
    );
    assert!(denied(&k, "Produce", "topic") >= 1.0);

    // An allowed producer and group on the same kelp work.
    assert_eq!(produce(k.addr(), open, 50), 50);
    let allowed = GroupConsumer::start(k.addr(), "team-a-orders", "acl-a", &[open]);
    // A group that is not allowed: a group authorization error, and it never joins.
    let refused = GroupConsumer::start(k.addr(), "team-b-orders", "acl-b", &[open]);
    wait_until(
        "the allowed group to consume everything",
        Duration::from_secs(90),
        || allowed.count() >= 50,
    );
    wait_until(
        "the refused group to see a group authorization error",
        Duration::from_secs(60),
        || {
            refused
                .consumed
                .errors()
                .iter()
                .any(|e| e.contains("Group authorization failed"))
        },
    );
    assert_eq!(refused.count(), 0, "the refused group consumed nothing");
    assert_eq!(
        refused.consumed.assignments_seen(),
        0,
        "the refused group never got an assignment"
    );
    let body = k.http_get("/metrics").1;
    assert!(
        !body.contains("group=\"team-b-orders\""),
        "kelp's coordinator never saw the refused group"
    );
    assert!(body.contains("group=\"team-a-orders\""));
    assert!(denied(&k, "FindCoordinator", "group") >= 1.0);
    assert!(k.log().contains("access denied"), "one log line per denial");
    drop(refused.stop());
    drop(allowed.stop());
}

#[test]
fn a_reload_that_tightens_a_rule_takes_effect_on_the_next_request() {
    let topic = "acl-reload";
    create_topic(open_kelp().addr(), topic, 1);
    let anon = "User:ANONYMOUS";
    let open = format!(
        "[access]\n{}",
        allow(anon, "topic", topic, "literal", &["write"])
    );
    let (k, path) = kelp_with("reload", &open, &[]);
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", k.addr())
        .set("broker.address.family", "v4")
        .set("linger.ms", "0")
        .set("message.timeout.ms", "20000")
        .create()
        .expect("producer");
    let send = |value: &str| -> Result<(), String> {
        producer
            .send(BaseRecord::<(), str>::to(topic).payload(value))
            .map_err(|(e, _)| e.to_string())?;
        producer
            .flush(Duration::from_secs(30))
            .map_err(|e| e.to_string())?;
        Ok(())
    };
    send("before").expect("allowed before the reload");
    let before = gateway_high_watermark(topic);
    assert_eq!(before, 1);

    // Tighten: the same principal may now only describe the topic.
    let tight = format!(
        "[access]\n{}{}",
        allow(anon, "topic", topic, "literal", &["write"]),
        rule(anon, "topic", "acl-", "prefixed", &["write"], "deny"),
    );
    let ok = "kelp_config_reloads_total{result=\"ok\"} ";
    let reloads = metric(&k, ok);
    write_config(&path, &tight);
    let pid = k.pid().expect("kelp runs").to_string();
    assert!(std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .is_ok_and(|s| s.success()));
    wait_until("the reload to apply", Duration::from_secs(20), || {
        metric(&k, ok) > reloads
    });
    // The same producer, the same connection: its next Produce is refused.
    let refused =
        BaseProducer::<_>::send(&producer, BaseRecord::<(), str>::to(topic).payload("after"));
    assert!(refused.is_ok(), "queued");
    let _ = producer.flush(Duration::from_secs(30));
    assert_eq!(
        gateway_high_watermark(topic),
        before,
        "the record after the reload did not reach the gateway"
    );
    assert!(denied(&k, "Produce", "topic") >= 1.0);
}

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
    pem: PathBuf,
}

fn ca() -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, "acl CA");
    let cert = params.self_signed(&key).unwrap();
    let pem = dir().join("ca.pem");
    std::fs::write(&pem, cert.pem()).unwrap();
    Ca { cert, key, pem }
}

/// A certificate signed by `ca` with subject `CN=<cn>,O=acme` and `sans` as DNS names.
fn leaf(ca: &Ca, cn: &str, sans: &[&str]) -> (PathBuf, PathBuf) {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "acme");
    params.distinguished_name.push(DnType::CommonName, cn);
    let cert = params.signed_by(&key, &ca.cert, &ca.key).unwrap();
    let (c, k) = (
        dir().join(format!("{cn}.pem")),
        dir().join(format!("{cn}.key")),
    );
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

/// The topics confluent-kafka lists through `addr` with client certificate `identity`.
fn topics_over_mtls(addr: &str, ca: &Ca, identity: &(PathBuf, PathBuf)) -> Vec<String> {
    let script = r#"
import sys
from confluent_kafka.admin import AdminClient
a = AdminClient({"bootstrap.servers": sys.argv[1], "security.protocol": "ssl",
                 "ssl.ca.location": sys.argv[2], "ssl.certificate.location": sys.argv[3],
                 "ssl.key.location": sys.argv[4], "ssl.endpoint.identification.algorithm": "none",
                 "broker.address.family": "v4"})
md = a.list_topics(timeout=30)
print("\n".join(sorted(md.topics)))
"#;
    let out = python_ok(
        script,
        &[
            addr,
            ca.pem.to_str().unwrap(),
            identity.0.to_str().unwrap(),
            identity.1.to_str().unwrap(),
        ],
    );
    out.lines().map(str::to_string).collect()
}

#[test]
fn two_mtls_principals_on_one_kelp_see_different_topics() {
    for t in ["acl-team-a-1", "acl-team-b-1"] {
        create_topic(open_kelp().addr(), t, 1);
    }
    let ca = ca();
    let server = leaf(&ca, "kelp", &["127.0.0.1", "localhost"]);
    let team_a = leaf(&ca, "team-a", &["team-a.example.com"]);
    let team_b = leaf(&ca, "team-b", &["team-b.example.com"]);
    // team A by its subject, team B by its subject alternative name.
    let config = format!(
        "[access]\n{}{}",
        allow(
            "User:CN=team-a,O=acme",
            "topic",
            "acl-team-a-",
            "prefixed",
            &["describe"]
        ),
        allow(
            "User:team-b.example.com",
            "topic",
            "acl-team-b-",
            "prefixed",
            &["describe"]
        ),
    );
    let (k, _) = kelp_with(
        "mtls",
        &config,
        &[
            "--tls-cert",
            server.0.to_str().unwrap(),
            "--tls-key",
            server.1.to_str().unwrap(),
            "--tls-client-ca",
            ca.pem.to_str().unwrap(),
        ],
    );
    let a = topics_over_mtls(k.addr(), &ca, &team_a);
    let b = topics_over_mtls(k.addr(), &ca, &team_b);
    assert!(a.contains(&"acl-team-a-1".to_string()), "{a:?}");
    assert!(!a.iter().any(|t| t.starts_with("acl-team-b-")), "{a:?}");
    assert!(b.contains(&"acl-team-b-1".to_string()), "{b:?}");
    assert!(!b.iter().any(|t| t.starts_with("acl-team-a-")), "{b:?}");
    assert!(a.iter().all(|t| t.starts_with("acl-team-a-")), "{a:?}");
}

#[test]
fn delete_groups_of_a_foreign_group_is_refused_by_the_clients_own_kelp() {
    let topic = "acl-mesh";
    create_topic(open_kelp().addr(), topic, 2);
    let peers: Vec<String> = (0..2)
        .map(|_| format!("127.0.0.1:{}", support::free_port()))
        .collect();
    let prefix = format!("/kelp-acl-mesh/{}", std::process::id());
    // Team A's group, owned by kelp 0 (picked by the rendezvous hash the kelps use).
    let group = (0..100)
        .map(|i| format!("team-a-mesh-{i}"))
        .find(|g| kelp::peers::hash::owner(&peers, g) == Some(peers[0].as_str()))
        .expect("a group kelp 0 owns");
    let anon = "User:ANONYMOUS";
    let team_a = format!(
        "[access]\n{}{}",
        allow(anon, "topic", topic, "literal", &["all"]),
        allow(anon, "group", "team-a-", "prefixed", &["all"]),
    );
    // Team B may describe every group (so FindCoordinator and DescribeGroups work), but only
    // its own may it delete.
    let team_b = format!(
        "[access]\n{}{}{}",
        allow(anon, "topic", topic, "literal", &["read", "write"]),
        allow(anon, "group", "team-b-", "prefixed", &["all"]),
        allow(anon, "group", "*", "literal", &["describe"]),
    );
    let start = |i: usize, config: &str| {
        let me = &peers[i];
        kelp_with(
            &format!("mesh-{i}"),
            config,
            &[
                "--filer",
                &stack().filer,
                "--store-prefix",
                &prefix,
                "--group-initial-rebalance-delay-ms",
                "0",
                "--peer-listen",
                me,
                "--peer-advertised",
                me,
                "--peers",
                &peers.join(","),
                "--peer-probe-interval-ms",
                "500",
            ],
        )
        .0
    };
    let a = start(0, &team_a);
    let b = start(1, &team_b);
    let live = "kelp_peers{state=\"live\"} ";
    wait_until("both kelps live", Duration::from_secs(30), || {
        metric(&a, live) == 2.0 && metric(&b, live) == 2.0
    });
    assert_eq!(produce(a.addr(), topic, 20), 20);
    // Team A consumes and commits through its own kelp, then leaves: an Empty group with offsets,
    // which DeleteGroups would wipe.
    let c = GroupConsumer::start(a.addr(), &group, "acl-mesh-a", &[topic]);
    wait_until("team A consumed", Duration::from_secs(90), || {
        c.count() >= 20
    });
    drop(c.stop());
    let offsets = committed(a.addr(), &group, topic, 2);
    assert_eq!(offsets.values().sum::<i64>(), 20, "{offsets:?}");

    // Team B's client asks its own kelp to delete team A's group: refused there, not forwarded.
    let admin = |addr: &str| -> AdminClient<DefaultClientContext> {
        ClientConfig::new()
            .set("bootstrap.servers", addr)
            .set("broker.address.family", "v4")
            .create()
            .expect("admin")
    };
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(30)));
    let forwarded_before = metric(
        &a,
        "kelp_requests_total{api=\"DeleteGroups\",path=\"local\"}",
    );
    let results =
        futures::executor::block_on(admin(b.addr()).delete_groups(&[group.as_str()], &opts))
            .expect("DeleteGroups answered");
    assert_eq!(results.len(), 1);
    let err = results[0].as_ref().expect_err("refused").1;
    assert_eq!(
        err,
        rdkafka::types::RDKafkaErrorCode::GroupAuthorizationFailed,
        "{results:?}"
    );
    assert!(denied(&b, "DeleteGroups", "group") >= 1.0);
    assert_eq!(
        metric(
            &a,
            "kelp_requests_total{api=\"DeleteGroups\",path=\"local\"}"
        ),
        forwarded_before,
        "the owner never saw the request"
    );
    // The owner still holds the group and its offsets.
    assert_eq!(committed(a.addr(), &group, topic, 2), offsets);
    // Team A's own kelp may delete it: the refusal above was the rule, not the mesh.
    let results =
        futures::executor::block_on(admin(a.addr()).delete_groups(&[group.as_str()], &opts))
            .expect("DeleteGroups answered");
    assert!(results[0].is_ok(), "{results:?}");
    let after = committed(a.addr(), &group, topic, 2);
    assert!(after.values().all(|o| *o == -1), "{after:?}");
}
