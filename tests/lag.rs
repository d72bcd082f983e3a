//! Consumer lag (issue 17) against a real kelp in front of the real SeaweedFS stack: kelp's
//! `kelp_group_lag` equals the lag a real client computes (confluent-kafka's high watermark minus
//! its committed offset) for a member that pauses while a producer runs ahead; the status follows
//! the member (ok, stalled while it consumes without committing, ok again, stopped once it left);
//! `GET /groups` shows the same numbers; and 1,000 groups on 10 topics cost one ListOffsets per
//! topic set per round. kelp runs with a 1 s lag interval and a 4 s status window.

mod peers;
mod raw;
mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    ApiKey, GroupId, OffsetCommitRequest, OffsetCommitResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use serde_json::Value;
use support::Kelp;

const INTERVAL: Duration = Duration::from_secs(1);

fn kelp_for_lag(extra: &[&str]) -> Kelp {
    let mut args = vec![
        "--group-initial-rebalance-delay-ms",
        "0",
        "--lag-interval-secs",
        "1",
        "--lag-window-secs",
        "4",
    ];
    args.extend_from_slice(extra);
    Kelp::start(&args)
}

/// The value of `metric{labels...}` on kelp's /metrics (labels matched exactly, in any order).
fn series(kelp: &Kelp, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let (_, body) = kelp.http_get("/metrics");
    series_in(&body, metric, labels)
}

fn series_in(body: &str, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    body.lines()
        .filter(|l| l.strip_prefix(metric).is_some_and(|r| r.starts_with('{')))
        .find(|l| {
            let set = &l[metric.len()..l.find('}').unwrap_or(l.len())];
            set.matches("=\"").count() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| set.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// The value of a series without labels (0 if absent).
fn plain(body: &str, metric: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(metric)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

fn status(kelp: &Kelp, group: &str) -> Option<String> {
    let (_, body) = kelp.http_get("/metrics");
    ["ok", "warning", "stalled", "stopped"]
        .into_iter()
        .find(|s| {
            series_in(
                &body,
                "kelp_group_lag_status",
                &[("group", group), ("status", s)],
            ) == Some(1.0)
        })
        .map(str::to_string)
}

fn groups_json(kelp: &Kelp) -> Value {
    let (code, body) = kelp.http_get("/groups");
    assert_eq!(code, 200, "/groups: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("/groups is not JSON ({e}): {body}"))
}

fn group_in<'a>(doc: &'a Value, group: &str) -> Option<&'a Value> {
    doc["groups"]
        .as_array()?
        .iter()
        .find(|g| g["group"] == group)
}

/// Waits (bounded) until `cond` returns Some, polling every 100 ms; panics with `what` and the
/// last value seen.
fn wait_for<T: std::fmt::Debug>(
    what: &str,
    limit: Duration,
    mut cond: impl FnMut() -> (Option<T>, String),
) -> T {
    let t0 = Instant::now();
    loop {
        let (got, last) = cond();
        if let Some(v) = got {
            return v;
        }
        assert!(
            t0.elapsed() < limit,
            "{what}: not within {limit:?}; last: {last}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// One `tests/support/lag_member.py` process: a confluent-kafka member driven over stdin.
struct Member {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Member {
    fn start(bootstrap: &str, group: &str, topic: &str) -> Member {
        let mut child = Command::new(support::python_bin())
            .arg(format!("{}/tests/support/lag_member.py", support::REPO))
            .args(["--bootstrap", bootstrap, "--group", group, "--topic", topic])
            .args(["--max-seconds", "600"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn lag_member.py");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Member {
            child,
            stdin,
            lines,
        }
    }

    /// The next line starting with `prefix` (others are logged), within `limit`.
    fn expect(&self, prefix: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.starts_with(prefix) => return l,
                Ok(l) => eprintln!("lag member: {l}"),
                Err(e) => panic!("lag member: no {prefix:?} line within {limit:?} ({e})"),
            }
        }
    }

    fn command(&mut self, cmd: &str) {
        writeln!(self.stdin, "{cmd}").expect("write to lag member");
        self.stdin.flush().unwrap();
        self.expect(&format!("ok {cmd}"), Duration::from_secs(30));
    }

    /// The client-computed lag: (total, worst partition).
    fn lag(&mut self) -> (i64, i64) {
        writeln!(self.stdin, "lag").expect("write to lag member");
        self.stdin.flush().unwrap();
        let line = self.expect("lag ", Duration::from_secs(60));
        let mut f = line.split(' ').skip(1);
        let total = f.next().and_then(|v| v.parse().ok()).expect("lag total");
        let worst = f.next().and_then(|v| v.parse().ok()).expect("lag max");
        eprintln!("lag member: {line}");
        (total, worst)
    }

    fn exit(mut self) {
        let _ = writeln!(self.stdin, "exit");
        let _ = self.stdin.flush();
        self.expect("closed", Duration::from_secs(60));
        let _ = self.child.wait();
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn lag_equals_the_clients_and_status_follows_the_member() {
    let kelp = kelp_for_lag(&[]);
    let tag = std::process::id();
    let (topic, group) = (format!("lag-{tag}"), format!("lag-group-{tag}"));
    support::create_topic(kelp.addr(), &topic, 3);
    assert_eq!(support::produce(kelp.addr(), &topic, 150), 150);

    let mut member = Member::start(kelp.addr(), &group, &topic);
    member.expect("assigned ", Duration::from_secs(60));
    let lag_of = |kelp: &Kelp| {
        series(
            kelp,
            "kelp_group_lag",
            &[("group", &group), ("topic", &topic)],
        )
    };
    // Caught up and committing: lag 0, ok.
    wait_for(
        "lag 0 and status ok while consuming",
        Duration::from_secs(60),
        || {
            let (l, s) = (lag_of(&kelp), status(&kelp, &group));
            (
                (l == Some(0.0) && s.as_deref() == Some("ok")).then_some(()),
                format!("{l:?} {s:?}"),
            )
        },
    );

    // Paused: a producer runs ahead (600 messages in 20 paced batches). Sample kelp's lag
    // against the client's while it produces: kelp's is up to one interval old, so the
    // difference is about what was produced since kelp's last round.
    member.command("pause");
    let bootstrap = kelp.addr().to_string();
    let producing = {
        let topic = topic.clone();
        thread::spawn(move || {
            for _ in 0..20 {
                support::produce(&bootstrap, &topic, 30);
                thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let mut largest_difference = 0.0f64;
    let mut samples = 0;
    while !producing.is_finished() {
        let (client, _) = member.lag();
        let kelp_lag = lag_of(&kelp).unwrap_or(0.0);
        largest_difference = largest_difference.max((kelp_lag - client as f64).abs());
        samples += 1;
    }
    producing.join().unwrap();
    let (client, client_worst) = member.lag();
    assert_eq!(
        client, 600,
        "the paused member lags by the 600 new messages"
    );
    // Equal within one interval (and the round's time): kelp reads the same offsets.
    let t0 = Instant::now();
    wait_for(
        "kelp_group_lag == the client's lag",
        INTERVAL * 3 + Duration::from_secs(10),
        || {
            let l = lag_of(&kelp);
            (
                (l == Some(client as f64)).then_some(()),
                format!("kelp {l:?}, client {client}"),
            )
        },
    );
    eprintln!(
        "lag: kelp matched the client's lag {client} {:.1} s after production stopped; largest difference in {samples} samples while producing: {largest_difference}",
        t0.elapsed().as_secs_f64()
    );
    let worst = series(
        &kelp,
        "kelp_group_lag_max_partition",
        &[("group", &group), ("topic", &topic)],
    );
    assert_eq!(worst, Some(client_worst as f64), "largest partition lag");
    assert!(
        series(&kelp, "kelp_group_commit_age_seconds", &[("group", &group)])
            .is_some_and(|a| a >= 0.0),
        "commit age exported"
    );

    // /groups shows the same numbers, the state, the member and its assignment.
    let doc = groups_json(&kelp);
    let g = group_in(&doc, &group).unwrap_or_else(|| panic!("/groups lists {group}: {doc}"));
    assert_eq!(g["state"], "Stable", "{g}");
    assert_eq!(g["mode"], "local");
    assert_eq!(g["protocol_type"], "consumer");
    assert_eq!(g["lag"], client, "{g}");
    let t = &g["topics"][0];
    assert_eq!(
        (t["topic"].as_str(), t["lag"].as_i64()),
        (Some(topic.as_str()), Some(client))
    );
    assert_eq!(t["max_partition_lag"], client_worst);
    assert_eq!(t["partitions"].as_array().map(Vec::len), Some(3), "{t}");
    let members = g["members"].as_array().expect("members");
    assert_eq!(members.len(), 1, "{g}");
    let assigned = members[0]["assignment"][topic.as_str()]
        .as_array()
        .map(Vec::len);
    assert_eq!(assigned, Some(3), "the member's decoded assignment: {g}");

    // Committing again: lag back to 0 and ok.
    member.command("commit");
    wait_for(
        "lag 0 and status ok after resuming",
        Duration::from_secs(60),
        || {
            let (l, s) = (lag_of(&kelp), status(&kelp, &group));
            (
                (l == Some(0.0) && s.as_deref() == Some("ok")).then_some(()),
                format!("{l:?} {s:?}"),
            )
        },
    );

    // Consuming without committing: stalled (lag > 0, Stable, commits frozen for the window).
    member.command("nocommit");
    assert_eq!(support::produce(kelp.addr(), &topic, 90), 90);
    wait_for(
        "status stalled with lag 90",
        Duration::from_secs(60),
        || {
            let (l, s) = (lag_of(&kelp), status(&kelp, &group));
            let doc = groups_json(&kelp);
            let g = group_in(&doc, &group).cloned();
            (
                (l == Some(90.0) && s.as_deref() == Some("stalled")).then_some(()),
                format!("{l:?} {s:?} {g:?}"),
            )
        },
    );
    assert_eq!(member.lag().0, 90, "the client sees the same lag");

    // The member leaves with messages left: stopped.
    member.command("pause");
    assert_eq!(support::produce(kelp.addr(), &topic, 40), 40);
    member.exit();
    wait_for(
        "status stopped with lag 130",
        Duration::from_secs(60),
        || {
            let (l, s) = (lag_of(&kelp), status(&kelp, &group));
            (
                (l == Some(130.0) && s.as_deref() == Some("stopped")).then_some(()),
                format!("{l:?} {s:?}"),
            )
        },
    );
    let doc = groups_json(&kelp);
    let g = group_in(&doc, &group).expect("the group is still listed");
    assert_eq!(
        (g["state"].as_str(), g["status"].as_str()),
        (Some("Empty"), Some("stopped"))
    );
    assert_eq!(g["lag"], 130);
    println!("largest difference between kelp_group_lag and the client's lag while producing: {largest_difference}");
}

/// A simple-group commit (generation -1, no member) of `offset` on partition 0 of `topic`.
fn commit(raw: &mut raw::Raw, group: &str, topic: &str, offset: i64) {
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(offset)])]);
    let response: OffsetCommitResponse = raw.call(ApiKey::OffsetCommit, 2, &request);
    let code = response.topics[0].partitions[0].error_code;
    assert_eq!(code, 0, "commit of {group}");
}

#[test]
fn a_thousand_groups_on_ten_topics_cost_one_list_offsets_per_topic_set() {
    let kelp = kelp_for_lag(&[]);
    let tag = std::process::id();
    let topics: Vec<String> = (0..10).map(|i| format!("lag-many-{tag}-{i}")).collect();
    for (i, t) in topics.iter().enumerate() {
        support::create_topic(kelp.addr(), t, 1);
        assert_eq!(support::produce(kelp.addr(), t, 10 + i), 10 + i);
    }
    let mut raw = raw::Raw::connect(kelp.addr());
    for g in 0..1000 {
        // Group g reads topic g % 10 and has consumed g % 5 messages.
        commit(
            &mut raw,
            &format!("lag-many-{tag}-g{g}"),
            &topics[g % 10],
            (g % 5) as i64,
        );
    }
    // Wait for a round that saw every group, then count requests over several rounds.
    let counts = |body: &str| {
        let v = |m: &str, l: &[(&str, &str)]| series_in(body, m, l).unwrap_or(0.0);
        (
            plain(body, "kelp_lag_rounds_total"),
            v("kelp_lag_list_offsets_requests_total", &[("result", "ok")]),
            v(
                "kelp_lag_list_offsets_requests_total",
                &[("result", "error")],
            ),
            plain(body, "kelp_lag_topic_sets"),
        )
    };
    let last = format!("lag-many-{tag}-g999");
    wait_for(
        "a round with all 1,000 groups",
        Duration::from_secs(60),
        || {
            let l = series(
                &kelp,
                "kelp_group_lag",
                &[("group", &last), ("topic", &topics[9])],
            );
            (l.map(|_| ()), format!("{l:?}"))
        },
    );
    let (_, body) = kelp.http_get("/metrics");
    let (r0, ok0, err0, sets) = counts(&body);
    assert_eq!(sets, 10.0, "ten topic sets");
    let t0 = Instant::now();
    let (r1, ok1, err1) = wait_for("five more rounds", Duration::from_secs(60), || {
        let (_, body) = kelp.http_get("/metrics");
        let (r, ok, err, _) = counts(&body);
        (
            (r >= r0 + 5.0).then_some((r, ok, err)),
            format!("rounds {r}"),
        )
    });
    let rounds = r1 - r0;
    let requests = (ok1 - ok0) + (err1 - err0);
    eprintln!(
        "lag: {rounds} rounds, {requests} ListOffsets ({} failed) for 1,000 groups on 10 topics in {:.1} s",
        err1 - err0,
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(
        requests,
        10.0 * rounds,
        "one ListOffsets per topic set per round"
    );
    // Every group has its own lag (1,000 tracked groups, the default cap), and the right one.
    let (_, body) = kelp.http_get("/metrics");
    for g in [0usize, 7, 123, 999] {
        let (topic, produced) = (&topics[g % 10], (10 + g % 10) as f64);
        let lag = series_in(
            &body,
            "kelp_group_lag",
            &[("group", &format!("lag-many-{tag}-g{g}")), ("topic", topic)],
        );
        assert_eq!(lag, Some(produced - (g % 5) as f64), "group {g}");
    }
    assert!(!body.contains("group=\"__other__\""), "no group folded");
    let doc = groups_json(&kelp);
    assert_eq!(doc["groups"].as_array().map(Vec::len), Some(1000));
}

#[test]
fn a_passthrough_groups_lag_comes_from_the_gateways_commits() {
    let kelp = kelp_for_lag(&["--group-mode", "passthrough"]);
    let tag = std::process::id();
    let (topic, group) = (format!("lag-pt-{tag}"), format!("lag-pt-group-{tag}"));
    support::create_topic(kelp.addr(), &topic, 1);
    assert_eq!(support::produce(kelp.addr(), &topic, 50), 50);
    let consumer = support::GroupConsumer::start(kelp.addr(), &group, "lag-pt", &[topic.as_str()]);
    wait_for(
        "the passthrough member consumed 50",
        Duration::from_secs(90),
        || {
            let n = consumer.count();
            ((n >= 50).then_some(()), format!("{n} consumed"))
        },
    );
    // Auto-commit (1 s) reaches the gateway, kelp reads it back: lag 0.
    let lag_of = |kelp: &Kelp| {
        series(
            kelp,
            "kelp_group_lag",
            &[("group", &group), ("topic", &topic)],
        )
    };
    wait_for("passthrough lag 0", Duration::from_secs(60), || {
        let l = lag_of(&kelp);
        ((l == Some(0.0)).then_some(()), format!("{l:?}"))
    });
    consumer.stop();
    assert_eq!(support::produce(kelp.addr(), &topic, 20), 20);
    // What a client computes: the high watermark (70) minus the gateway's committed offset.
    let committed = support::committed(kelp.addr(), &group, &topic, 1)[&0];
    assert!(committed >= 50, "the gateway kept the commit: {committed}");
    let expected = (70 - committed) as f64;
    wait_for(
        "passthrough lag == 70 - committed",
        Duration::from_secs(60),
        || {
            let l = lag_of(&kelp);
            (
                (l == Some(expected)).then_some(()),
                format!("{l:?}, expected {expected}"),
            )
        },
    );
    let doc = groups_json(&kelp);
    let g = group_in(&doc, &group).unwrap_or_else(|| panic!("/groups lists {group}: {doc}"));
    assert_eq!(g["mode"], "passthrough", "{g}");
    assert_eq!(g["lag"].as_f64(), Some(expected), "{g}");
    assert!(
        series(
            &kelp,
            "kelp_lag_offset_fetch_requests_total",
            &[("result", "ok")]
        )
        .is_some_and(|n| n >= 1.0),
        "commits read from the gateway"
    );
}

#[test]
fn with_several_kelps_only_the_owner_reports_a_groups_lag() {
    let mut cluster = peers::Cluster::new("lag-owner", 2);
    for i in 0..2 {
        cluster.start_with(i, &["--lag-interval-secs", "1"]);
    }
    cluster.wait_peers_live(2, Duration::from_secs(30));
    let tag = std::process::id();
    let (topic, group) = (format!("lag-mesh-{tag}"), format!("lag-mesh-group-{tag}"));
    support::create_topic(&cluster.addr(0), &topic, 1);
    assert_eq!(support::produce(&cluster.addr(0), &topic, 30), 30);
    let owner = cluster.hash_owner(&group, &[0, 1]);
    let other = 1 - owner;
    // Committed through the kelp that does not own the group: it forwards to the owner.
    let mut raw = raw::Raw::connect(&cluster.addr(other));
    commit(&mut raw, &group, &topic, 10);
    let lag_on = |i: usize| {
        series(
            cluster.kelp(i),
            "kelp_group_lag",
            &[("group", &group), ("topic", &topic)],
        )
    };
    wait_for("the owner reports lag 20", Duration::from_secs(60), || {
        let l = lag_on(owner);
        ((l == Some(20.0)).then_some(()), format!("{l:?}"))
    });
    // A few more rounds on the other kelp: never a series, never a /groups entry.
    let rounds = |i: usize| {
        plain(
            &cluster.kelp(i).http_get("/metrics").1,
            "kelp_lag_rounds_total",
        )
    };
    let start = rounds(other);
    wait_for(
        "three rounds on the other kelp",
        Duration::from_secs(60),
        || {
            let r = rounds(other);
            ((r >= start + 3.0).then_some(()), format!("{r}"))
        },
    );
    assert_eq!(lag_on(other), None, "kelp {other} does not own {group}");
    assert!(group_in(&groups_json(cluster.kelp(other)), &group).is_none());
    let doc = groups_json(cluster.kelp(owner));
    assert_eq!(
        group_in(&doc, &group).map(|g| g["lag"].clone()),
        Some(Value::from(20))
    );
}
