//! Gradual migration with real parts: a consumer group of three librdkafka consumers (two in
//! process, one confluent-kafka child) consumes continuously through kelp while a producer keeps
//! writing; hot reloads of kelp's config file move the group from the gateway's coordinator to
//! kelp's and back, and an invalid file is refused. Checks: consumption continues, no committed
//! offset ever goes backwards (OffsetFetch through kelp, sampled throughout), every redelivered
//! message lies in the uncommitted window, kelp's coordinator owns every partition exactly once,
//! nothing produced is lost. Reports switch-over time and duplicates per switch, and what the
//! gateway's own coordinator got wrong while it served the group.

mod migration;
mod raw;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use migration::{
    cover_faults, metric, redelivered, reload, since, wait_exact_cover, wait_more, write_config,
    Members, OffsetWatch, Producer, Progress, PARTITIONS, RDKAFKA,
};
use support::{GroupConsumer, Kelp, PyClient, PyConsumer, Record};

/// The running scenario: kelp, its config file, the group and what watches it.
struct Scene<'a> {
    kelp: &'a Kelp,
    config: &'a Path,
    group: &'a str,
    members: &'a Members,
    progress: &'a Progress,
    watch: &'a OffsetWatch,
}

impl Scene<'_> {
    fn series(&self, name: &str, mode: &str, extra: &str) -> String {
        // Per-group series carry the protocol (this is a classic group); the mode gauge does not.
        let protocol = match name {
            "kelp_group_mode" => "",
            _ => ",protocol=\"classic\"",
        };
        format!(
            "{name}{{group=\"{}\",mode=\"{mode}\"{protocol}{extra}}} ",
            self.group
        )
    }

    /// Reloads with `text` and returns what was consumed before, per member, and the committed
    /// offsets known then.
    fn switch(&self, text: &str) -> (Vec<Vec<Record>>, BTreeMap<i32, i64>, Instant) {
        let earlier = self.members.records();
        let floor = self.watch.high();
        let switched = Instant::now();
        reload(self.kelp, self.config, text, "ok");
        (earlier, floor, switched)
    }

    /// Reports the switch-over and checks every redelivered message lies in the uncommitted window.
    fn report(
        &self,
        what: &str,
        earlier: &[Vec<Record>],
        floor: &BTreeMap<i32, i64>,
        switched: Instant,
    ) {
        let over: Vec<String> = self
            .progress
            .switch_over(switched)
            .iter()
            .map(|d| {
                d.map_or("-".into(), |d| {
                    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
                })
            })
            .collect();
        let counts: Vec<usize> = earlier.iter().map(Vec::len).collect();
        let later = since(&self.members.records(), &counts);
        let (dups, outside) = redelivered(earlier, &later, floor);
        eprintln!(
            "{what}: switch-over per member (last message under the old coordinator -> first under \
             the new) {over:?}; {dups} redelivered of {} consumed after the switch; assignments {:?}",
            later.iter().map(Vec::len).sum::<usize>(),
            self.members.assignments(),
        );
        assert!(
            outside.is_empty(),
            "{what}: redelivered below the committed offset: {outside:?}"
        );
    }

    /// Moves the group to kelp's coordinator and checks it there.
    fn to_local(&self, what: &str) {
        let (earlier, floor, switched) = self.switch(&local_rule(self.group));
        let generation = self.series("kelp_group_generation", "local", "");
        support::wait_until("the group joined at kelp", Duration::from_secs(60), || {
            metric(self.kelp, &generation) >= 1.0
        });
        wait_exact_cover(
            "kelp's coordinator owning every partition once",
            self.members,
            Duration::from_secs(60),
        );
        eprintln!(
            "{what}: every partition owned once {:?} after the reload",
            switched.elapsed()
        );
        let stable = self.series("kelp_group_state", "local", ",state=\"Stable\"");
        support::wait_until("the group Stable at kelp", Duration::from_secs(30), || {
            metric(self.kelp, &stable) == 1.0
        });
        wait_more(
            "consumption through kelp's coordinator",
            self.members,
            600,
            Duration::from_secs(60),
        );
        self.report(what, &earlier, &floor, switched);
        assert_eq!(
            metric(self.kelp, &self.series("kelp_group_mode", "local", "")),
            1.0
        );
        // Every member holds an exclusive set while kelp coordinates.
        let faults = cover_faults(&self.members.assignments());
        assert_eq!(
            faults,
            (0, 0),
            "kelp's assignment {:?}",
            self.members.assignments()
        );
    }

    /// Moves the group back to the gateway's coordinator (which takes kelp's offsets back).
    fn to_passthrough(&self, what: &str) {
        let generation = self.series("kelp_group_generation", "passthrough", "");
        let before = metric(self.kelp, &generation);
        let (earlier, floor, switched) = self.switch(PASSTHROUGH);
        support::wait_until(
            "a new generation at the gateway",
            Duration::from_secs(60),
            || metric(self.kelp, &generation) > before,
        );
        wait_more(
            "consumption through the gateway again",
            self.members,
            600,
            Duration::from_secs(60),
        );
        self.report(what, &earlier, &floor, switched);
        eprintln!(
            "{what}: gateway assignment faults (overlapping, missing) {:?}",
            cover_faults(&self.members.assignments())
        );
    }
}

const PASSTHROUGH: &str = "[groups]\ndefault_mode = \"passthrough\"\n";

fn local_rule(group: &str) -> String {
    format!("{PASSTHROUGH}\n[[groups.rules]]\npattern = \"{group}\"\nmode = \"local\"\n")
}

#[test]
fn a_live_group_moves_to_kelp_and_back_by_hot_reload() {
    let dir = support::scratch_dir().join("migration");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("kelp.toml");
    write_config(&config, PASSTHROUGH);
    let filer = support::stack().filer.clone();
    let kelp = Kelp::start(&[
        "--config",
        config.to_str().unwrap(),
        "--filer",
        &filer,
        "--group-initial-rebalance-delay-ms",
        "0",
    ]);
    let pid = kelp.pid();
    let (topic, group) = ("migration-orders", "migration-orders-audit");
    support::create_topic(kelp.addr(), topic, PARTITIONS);
    let producer = Producer::start(kelp.addr(), topic);
    let members = Arc::new(Members {
        a: GroupConsumer::start_with(kelp.addr(), group, "member-a", &[topic], RDKAFKA),
        b: GroupConsumer::start_with(kelp.addr(), group, "member-b", &[topic], RDKAFKA),
        c: PyConsumer::start_with(
            PyClient::Confluent,
            kelp.addr(),
            group,
            "member-c",
            &[topic],
            &[
                ("session.timeout.ms", "6000"),
                ("heartbeat.interval.ms", "500"),
                ("auto.commit.interval.ms", "500"),
            ],
        ),
    });
    let progress = Progress::start(members.clone());

    // Passthrough: the gateway's coordinator serves the group; kelp only watches.
    wait_more(
        "consumption through the gateway's coordinator",
        &members,
        600,
        Duration::from_secs(60),
    );
    let watch = OffsetWatch::start(kelp.addr(), group, topic);
    // The gateway's coordinator does not always assign every partition (reported below): wait
    // for commits of what it assigned, up to all partitions.
    let start = Instant::now();
    while watch.high().len() < PARTITIONS as usize && start.elapsed() < Duration::from_secs(15) {
        thread::sleep(Duration::from_millis(100));
    }
    assert!(!watch.high().is_empty(), "no commit through the gateway");
    let gateway_faults = cover_faults(&members.assignments());
    eprintln!(
        "passthrough: assignments {:?} (overlapping, missing) = {gateway_faults:?}; committed {:?}",
        members.assignments(),
        watch.high()
    );
    let generation = format!(
        "kelp_group_generation{{group=\"{group}\",mode=\"passthrough\",protocol=\"classic\"}} "
    );
    assert!(
        metric(&kelp, &generation) >= 1.0,
        "no passthrough generation observed"
    );
    assert_eq!(
        metric(
            &kelp,
            &format!("kelp_group_mode{{group=\"{group}\",mode=\"passthrough\"}} ")
        ),
        1.0
    );

    let scene = Scene {
        kelp: &kelp,
        config: &config,
        group,
        members: &members,
        progress: &progress,
        watch: &watch,
    };
    scene.to_local("passthrough -> local");
    scene.to_passthrough("local -> passthrough");

    // An invalid file changes nothing.
    let samples = watch.samples();
    reload(
        &kelp,
        &config,
        "[groups]\ndefault_mode = \"everywhere\"\n",
        "error",
    );
    assert_eq!(metric(&kelp, "kelp_config_last_reload_successful "), 0.0);
    wait_more(
        "consumption after a refused reload",
        &members,
        200,
        Duration::from_secs(30),
    );
    assert_eq!(
        metric(
            &kelp,
            &format!("kelp_group_mode{{group=\"{group}\",mode=\"passthrough\"}} ")
        ),
        1.0,
        "a refused file moved the group"
    );
    assert!(
        kelp.log().contains("config reload rejected"),
        "no log line for the refused file"
    );
    support::wait_until(
        "offset samples after the refused reload",
        Duration::from_secs(10),
        || watch.samples() > samples + 2,
    );

    // Back to kelp: this time kelp holds offsets of its own, older than the gateway's.
    scene.to_local("passthrough -> local again");

    // Nothing lost, nothing committed backwards, kelp never restarted.
    let acked = producer.finish();
    let want: BTreeSet<(i32, i64)> = acked.iter().copied().collect();
    support::wait_until(
        "every acked message consumed",
        Duration::from_secs(60),
        || {
            let got: BTreeSet<(i32, i64)> = members
                .records()
                .iter()
                .flatten()
                .map(|r| (r.partition, r.offset))
                .collect();
            want.is_subset(&got)
        },
    );
    let backwards = watch.finish();
    assert!(
        backwards.is_empty(),
        "committed offsets went backwards: {backwards:?}"
    );
    assert_eq!(kelp.pid(), pid, "kelp restarted");
    let total: usize = members.records().iter().map(Vec::len).sum();
    eprintln!("produced {} acked, consumed {total} in all", want.len());
    drop(progress);
    if let Ok(m) = Arc::try_unwrap(members) {
        let _ = m.a.stop();
        let _ = m.b.stop();
        let _ = m.c.stop();
    }
}
