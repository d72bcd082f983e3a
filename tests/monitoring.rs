//! Monitoring (TESTING.md): the alert rules pass `promtool check rules` and `promtool test rules`;
//! the dashboards are complete Grafana models; and a REAL Prometheus (Debian package, installed by
//! scripts/prometheus) scraping a REAL kelp while a real classic consumer group and a real KIP-848
//! consumer group (`group.protocol=consumer`) rebalance returns data for every dashboard panel query
//! and every alert expression, through its HTTP API.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::{GroupConsumer, Kelp, PyClient, PyConsumer, REPO};

const RULES: &str = "deploy/prometheus/kelp-rules.yaml";
const RULE_TESTS: &str = "deploy/prometheus/kelp-rules.test.yaml";
const DASHBOARDS: [&str; 2] = [
    "dashboards/kelp-consumer-groups.json",
    "dashboards/kelp-proxy.json",
];
/// The scrape job name kelp's alert rules expect (docs/METRICS.md, "Scraping").
const JOB: &str = "kelp";
/// The values of the per-group `protocol` label; the scenario runs a group of each.
const PROTOCOLS: [&str; 2] = ["classic", "consumer"];

// ------------------------------------------------------------------------------------------------
// a small JSON reader (dashboards and Prometheus API answers; no serde in the dev-dependencies)

#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn parse(text: &str) -> Result<Json, String> {
        let mut p = JsonParser {
            s: text.as_bytes(),
            i: 0,
        };
        let v = p.value()?;
        p.ws();
        if p.i != p.s.len() {
            return Err(format!("trailing characters at byte {}", p.i));
        }
        Ok(v)
    }
    fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
    fn str(&self, key: &str) -> Option<&str> {
        match self.get(key) {
            Some(Json::Str(s)) => Some(s),
            _ => None,
        }
    }
    fn arr(&self, key: &str) -> &[Json] {
        match self.get(key) {
            Some(Json::Arr(a)) => a,
            _ => &[],
        }
    }
    fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }
}

struct JsonParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl JsonParser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }
    fn eat(&mut self, lit: &str) -> Result<(), String> {
        if self.s[self.i..].starts_with(lit.as_bytes()) {
            self.i += lit.len();
            Ok(())
        } else {
            Err(format!("expected {lit:?} at byte {}", self.i))
        }
    }
    fn value(&mut self) -> Result<Json, String> {
        self.ws();
        match self.s.get(self.i) {
            None => Err("unexpected end".into()),
            Some(b'n') => self.eat("null").map(|_| Json::Null),
            Some(b't') => self.eat("true").map(|_| Json::Bool(true)),
            Some(b'f') => self.eat("false").map(|_| Json::Bool(false)),
            Some(b'"') => self.string().map(Json::Str),
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                loop {
                    self.ws();
                    if self.s.get(self.i) == Some(&b']') {
                        self.i += 1;
                        return Ok(Json::Arr(items));
                    }
                    if !items.is_empty() {
                        self.eat(",")?;
                    }
                    items.push(self.value()?);
                }
            }
            Some(b'{') => {
                self.i += 1;
                let mut fields = Vec::new();
                loop {
                    self.ws();
                    if self.s.get(self.i) == Some(&b'}') {
                        self.i += 1;
                        return Ok(Json::Obj(fields));
                    }
                    if !fields.is_empty() {
                        self.eat(",")?;
                        self.ws();
                    }
                    let k = self.string()?;
                    self.ws();
                    self.eat(":")?;
                    fields.push((k, self.value()?));
                }
            }
            Some(_) => {
                let start = self.i;
                while self.i < self.s.len() && b"+-0123456789.eE".contains(&self.s[self.i]) {
                    self.i += 1;
                }
                let t = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
                t.parse()
                    .map(Json::Num)
                    .map_err(|_| format!("bad value at byte {start}"))
            }
        }
    }
    fn string(&mut self) -> Result<String, String> {
        self.eat("\"")?;
        let mut out = Vec::new();
        loop {
            let c = *self.s.get(self.i).ok_or("unterminated string")?;
            self.i += 1;
            match c {
                b'"' => return String::from_utf8(out).map_err(|e| e.to_string()),
                b'\\' => {
                    let e = *self.s.get(self.i).ok_or("bad escape")?;
                    self.i += 1;
                    let ch = match e {
                        b'n' => '\n',
                        b't' => '\t',
                        b'r' => '\r',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'u' => {
                            let hex = std::str::from_utf8(
                                self.s.get(self.i..self.i + 4).ok_or("bad \\u")?,
                            )
                            .unwrap_or("");
                            self.i += 4;
                            char::from_u32(u32::from_str_radix(hex, 16).map_err(|e| e.to_string())?)
                                .unwrap_or('\u{fffd}')
                        }
                        other => other as char,
                    };
                    out.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes());
                }
                c => out.push(c),
            }
        }
    }
}

// ------------------------------------------------------------------------------------------------
// tools, files, dashboard queries

/// (prometheus, promtool), installed by scripts/prometheus when missing.
fn tools() -> &'static (PathBuf, PathBuf) {
    static TOOLS: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    TOOLS.get_or_init(|| {
        let out = Command::new(format!("{REPO}/scripts/prometheus"))
            .stderr(Stdio::inherit())
            .output()
            .expect("run scripts/prometheus");
        assert!(
            out.status.success(),
            "scripts/prometheus failed ({})",
            out.status
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let path = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .map(PathBuf::from)
                .unwrap_or_else(|| panic!("scripts/prometheus printed no {name} path:\n{text}"))
        };
        (path("prometheus"), path("promtool"))
    })
}

fn repo_file(rel: &str) -> String {
    fs::read_to_string(Path::new(REPO).join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

fn promtool(args: &[&str]) -> Output {
    Command::new(&tools().1)
        .args(args)
        .current_dir(REPO)
        .output()
        .unwrap_or_else(|e| panic!("run promtool {args:?}: {e}"))
}

/// One query of one dashboard panel.
#[derive(Debug, Clone)]
struct PanelQuery {
    dashboard: String,
    panel: String,
    ref_id: String,
    expr: String,
    instant: bool,
}

fn dashboard(rel: &str) -> Json {
    Json::parse(&repo_file(rel)).unwrap_or_else(|e| panic!("{rel} is not JSON: {e}"))
}

/// Every panel (rows' nested panels included), rows themselves left out.
fn panels(dash: &Json) -> Vec<&Json> {
    fn walk<'a>(list: &'a [Json], out: &mut Vec<&'a Json>) {
        for p in list {
            if p.str("type") != Some("row") {
                out.push(p);
            }
            walk(p.arr("panels"), out);
        }
    }
    let mut out = Vec::new();
    walk(dash.arr("panels"), &mut out);
    out
}

/// Every non-hidden target's `expr` of every panel of every dashboard.
fn panel_queries() -> Vec<PanelQuery> {
    let mut out = Vec::new();
    for rel in DASHBOARDS {
        let dash = dashboard(rel);
        for p in panels(&dash) {
            for t in p.arr("targets") {
                if t.get("hide") == Some(&Json::Bool(true)) {
                    continue;
                }
                if let Some(expr) = t.str("expr") {
                    out.push(PanelQuery {
                        dashboard: rel.to_string(),
                        panel: p.str("title").unwrap_or("?").to_string(),
                        ref_id: t.str("refId").unwrap_or("?").to_string(),
                        expr: expr.to_string(),
                        instant: t.get("instant") == Some(&Json::Bool(true))
                            && t.get("range") != Some(&Json::Bool(true)),
                    });
                }
            }
        }
    }
    out
}

/// The template variables of a dashboard: name -> (type, query).
fn variables(dash: &Json) -> BTreeMap<String, (String, String)> {
    let mut out = BTreeMap::new();
    for v in dash.get("templating").map(|t| t.arr("list")).unwrap_or(&[]) {
        let query = match v.get("query") {
            Some(Json::Str(s)) => s.clone(),
            Some(q @ Json::Obj(_)) => q.str("query").unwrap_or("").to_string(),
            _ => String::new(),
        };
        out.insert(
            v.str("name").unwrap_or("").to_string(),
            (v.str("type").unwrap_or("").to_string(), query),
        );
    }
    out
}

/// The variable names an expression uses: `$name`, `${name}`, `${name:format}`, `[[name]]`.
fn used_variables(expr: &str) -> Vec<String> {
    let b = expr.as_bytes();
    let mut out = Vec::new();
    let ident = |from: usize| {
        let end = (from..b.len())
            .find(|&j| !(b[j].is_ascii_alphanumeric() || b[j] == b'_'))
            .unwrap_or(b.len());
        (expr[from..end].to_string(), end)
    };
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' {
            let (name, end) = ident(i + if b.get(i + 1) == Some(&b'{') { 2 } else { 1 });
            out.push(name);
            i = end;
        } else if expr[i..].starts_with("[[") {
            let (name, end) = ident(i + 2);
            out.push(name);
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

/// Replaces every variable reference in `expr` with `values[name]`; panics on an unknown one.
fn substitute(expr: &str, values: &BTreeMap<&str, String>, what: &str) -> String {
    let mut out = expr.to_string();
    let mut names = used_variables(expr);
    names.sort_by_key(|n| std::cmp::Reverse(n.len())); // $__range_s before $__range
    for name in names {
        let v = values
            .get(name.as_str())
            .unwrap_or_else(|| panic!("{what}: unknown variable ${name} in {expr}"));
        for form in [
            format!("${{{name}}}"),
            format!("[[{name}]]"),
            format!("${name}"),
        ] {
            out = out.replace(&form, v);
        }
        let fmt = format!("${{{name}:");
        while let Some(at) = out.find(&fmt) {
            let end = at + out[at..].find('}').expect("closing brace");
            out.replace_range(at..=end, v);
        }
    }
    out
}

/// `expr` with every comparison against a number literal removed (`x > 10` -> `x`), so that an alert
/// expression returns the series it compares. String literals are left alone.
fn strip_comparisons(expr: &str) -> String {
    let b = expr.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'"' || b[i] == b'\'' || b[i] == b'`' {
            let q = b[i];
            let mut j = i + 1;
            while j < b.len() && b[j] != q {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            out.push_str(&expr[i..(j + 1).min(b.len())]);
            i = j + 1;
            continue;
        }
        let op = ["==", "!=", ">=", "<=", ">", "<"]
            .into_iter()
            .find(|op| expr[i..].starts_with(op));
        if let Some(op) = op {
            let mut j = i + op.len();
            while j < b.len() && b[j].is_ascii_whitespace() {
                j += 1;
            }
            if expr[j..].starts_with("bool ") {
                j += 5;
                while j < b.len() && b[j].is_ascii_whitespace() {
                    j += 1;
                }
            }
            let num_start = j;
            while j < b.len()
                && (b[j].is_ascii_digit() || b".eE+-".contains(&b[j]) && j > num_start)
            {
                j += 1;
            }
            if j > num_start && b[num_start].is_ascii_digit() {
                out.truncate(out.trim_end().len());
                i = j;
                continue;
            }
        }
        out.push(b[i] as char);
        i += 1;
    }
    out
}

/// Metric names an expression reads (`kelp_*`, histogram suffixes removed, and `up`).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let b = expr.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_alphabetic() || b[i] == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
                i += 1;
            }
            let word = &expr[start..i];
            let quoted = start > 0 && b[start - 1] == b'"';
            if !quoted && (word.starts_with("kelp_") || (word == "up" && b.get(i) == Some(&b'{'))) {
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .fold(word, |w, s| w.strip_suffix(s).unwrap_or(w));
                out.insert(base.to_string());
            }
        } else {
            i += 1;
        }
    }
    out
}

// ------------------------------------------------------------------------------------------------
// promtool and the dashboards, without a Prometheus server

#[test]
fn alert_rules_pass_promtool_check_and_unit_tests() {
    let check = promtool(&["check", "rules", RULES]);
    assert!(
        check.status.success(),
        "promtool check rules {RULES}:\n{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let test = promtool(&["test", "rules", RULE_TESTS]);
    assert!(
        test.status.success(),
        "promtool test rules {RULE_TESTS}:\n{}{}",
        String::from_utf8_lossy(&test.stdout),
        String::from_utf8_lossy(&test.stderr)
    );
    // every alert is unit-tested, and every rule carries what an on-call needs
    let rules = repo_file(RULES);
    let tests = repo_file(RULE_TESTS);
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert!(
        alerts.len() >= 6,
        "expected at least 6 alerts, found {alerts:?}"
    );
    for a in &alerts {
        assert!(
            tests.contains(&format!("alertname: {a}")),
            "{a} has no case in {RULE_TESTS}"
        );
    }
    for block in rules.split("- alert: ").skip(1) {
        let name = block.lines().next().unwrap_or("?");
        for key in [
            "expr:",
            "for:",
            "severity:",
            "summary:",
            "description:",
            "Runbook:",
        ] {
            assert!(block.contains(key), "alert {name} has no {key}");
        }
    }
}

#[test]
fn dashboards_are_complete_grafana_models() {
    let docs = repo_file("docs/METRICS.md");
    let spec_titles: [(&str, &[&str]); 2] = [
        (
            DASHBOARDS[0],
            &[
                "Rebalances per minute by reason",
                "Generation",
                "Members",
                "State timeline",
                "Rebalance duration p50 / p95 / p99",
                "Member evictions per minute by cause",
                "Offset-commit errors",
                "local vs passthrough",
                "Lag per group and topic",
                "Lag status timeline",
                "Commit age",
                "Group epoch vs target assignment epoch vs lowest member epoch",
                "Members unreconciled",
                "Partitions pending revocation / unreleased",
                "ConsumerGroupHeartbeat errors by error",
            ],
        ),
        (
            DASHBOARDS[1],
            &[
                "Requests/s by API and path",
                "Latency p50 / p99 by API",
                "Bytes/s",
                "Open connections",
                "Connection errors by reason",
                "Backend up",
                "Config reloads",
            ],
        ),
    ];
    for (rel, titles) in spec_titles {
        let dash = dashboard(rel);
        let ctx = |what: &str| format!("{rel}: {what}");
        assert!(
            matches!(dash.get("schemaVersion"), Some(Json::Num(v)) if *v >= 36.0),
            "{}",
            ctx("schemaVersion below 36")
        );
        assert!(
            dash.str("uid").is_some_and(|u| !u.is_empty()) && dash.str("title").is_some(),
            "{}",
            ctx("no uid or title")
        );
        let vars = variables(&dash);
        assert_eq!(
            vars.get("datasource"),
            Some(&("datasource".to_string(), "prometheus".to_string())),
            "{}",
            ctx("no datasource variable of type datasource/prometheus")
        );
        if rel.contains("consumer-groups") {
            assert_eq!(
                vars.get("group").map(|v| v.1.as_str()),
                Some("label_values(kelp_group_generation, group)"),
                "{}",
                ctx("group selector")
            );
            assert_eq!(
                vars.get("protocol").map(|v| v.1.as_str()),
                Some("label_values(kelp_group_generation, protocol)"),
                "{}",
                ctx("protocol selector (classic / consumer)")
            );
        }
        let all = panels(&dash);
        for t in titles {
            assert!(
                all.iter()
                    .any(|p| p.str("title").is_some_and(|x| x.contains(t))),
                "{}",
                ctx(&format!("no panel titled like {t:?}"))
            );
        }
        let mut cells = BTreeSet::new();
        for p in &all {
            let title = p.str("title").unwrap_or("?");
            let ctx = |what: &str| format!("{rel}: panel {title:?}: {what}");
            assert!(
                p.str("description").is_some_and(|d| d.len() > 20),
                "{}",
                ctx("no description")
            );
            let unit = p
                .get("fieldConfig")
                .and_then(|f| f.get("defaults"))
                .and_then(|d| d.str("unit"));
            assert!(unit.is_some_and(|u| !u.is_empty()), "{}", ctx("no unit"));
            assert_eq!(
                p.get("datasource").and_then(|d| d.str("uid")),
                Some("${datasource}"),
                "{}",
                ctx("datasource is not ${datasource}")
            );
            assert!(!p.arr("targets").is_empty(), "{}", ctx("no queries"));
            for t in p.arr("targets") {
                assert_eq!(
                    t.get("datasource").and_then(|d| d.str("uid")),
                    Some("${datasource}"),
                    "{}",
                    ctx("target datasource is not ${datasource}")
                );
                let expr = t
                    .str("expr")
                    .unwrap_or_else(|| panic!("{}", ctx("target without expr")));
                for v in used_variables(expr) {
                    assert!(
                        v.starts_with("__") || vars.contains_key(&v),
                        "{}",
                        ctx(&format!("uses undefined variable ${v}"))
                    );
                }
                for m in metric_names(expr) {
                    assert!(
                        m == "up" || docs.contains(&format!("`{m}`")),
                        "{}",
                        ctx(&format!(
                            "reads {m}, which docs/METRICS.md does not document"
                        ))
                    );
                }
            }
            let g = p
                .get("gridPos")
                .unwrap_or_else(|| panic!("{}", ctx("no gridPos")));
            let n = |k: &str| match g.get(k) {
                Some(Json::Num(v)) => *v as i64,
                _ => panic!("{}", ctx(&format!("gridPos.{k}"))),
            };
            assert!(n("x") + n("w") <= 24, "{}", ctx("wider than the grid"));
            for x in n("x")..n("x") + n("w") {
                for y in n("y")..n("y") + n("h") {
                    assert!(
                        cells.insert((x, y)),
                        "{}",
                        ctx(&format!("overlaps another panel at ({x},{y})"))
                    );
                }
            }
        }
    }
    for m in metric_names(&repo_file(RULES)) {
        assert!(
            m == "up" || docs.contains(&format!("`{m}`")),
            "{RULES} reads {m}, which docs/METRICS.md does not document"
        );
    }
}

#[test]
fn comparisons_are_stripped_outside_strings() {
    assert_eq!(strip_comparisons("kelp_backend_up == 0"), "kelp_backend_up");
    assert_eq!(
        strip_comparisons(r#"sum by (g) (increase(x{g!="__other__"}[15m])) > 10"#),
        r#"sum by (g) (increase(x{g!="__other__"}[15m]))"#
    );
    assert_eq!(
        strip_comparisons(r#"(a{s="Stable"} == 0) and on (g) (b > bool 0.5e1)"#),
        r#"(a{s="Stable"}) and on (g) (b)"#
    );
    assert_eq!(strip_comparisons(r#"x{l=">1"} > y"#), r#"x{l=">1"} > y"#);
    assert_eq!(
        used_variables(r#"r[$__rate_interval] {g=~"${group:regex}", i=~"$instance"} [[job]]"#),
        ["__rate_interval", "group", "instance", "job"]
    );
    assert_eq!(
        metric_names(
            r#"histogram_quantile(0.9, rate(kelp_a_bucket{x="kelp_b"}[1m])) or up{job="kelp"}"#
        ),
        BTreeSet::from(["kelp_a".to_string(), "up".to_string()])
    );
}

// ------------------------------------------------------------------------------------------------
// a real Prometheus

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Prometheus on a free 127.0.0.1 port with a temporary data directory, scraping `target` as
/// job `kelp` every second and evaluating kelp's alert rules every second. Killed on drop, and by
/// a watchdog if this test binary dies first.
struct Prometheus {
    child: Option<Child>,
    addr: String,
    dir: PathBuf,
    started: f64,
}

impl Prometheus {
    fn start(target: &str) -> Prometheus {
        let dir = support::scratch_dir().join(format!("prometheus-{}", support::free_port()));
        fs::create_dir_all(dir.join("data")).expect("create prometheus dir");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {REPO}/{RULES}\n\
             scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n      - targets: ['{target}']\n"
        );
        fs::write(dir.join("prometheus.yml"), config).expect("write prometheus.yml");
        let addr = format!("127.0.0.1:{}", support::free_port());
        let log = fs::File::create(dir.join("prometheus.log")).expect("create prometheus log");
        let child = Command::new(&tools().0)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--storage.tsdb.retention.time=1d")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", tools().0.display()));
        let watchdog = format!(
            "while kill -0 {owner} 2>/dev/null && kill -0 {p} 2>/dev/null; do sleep 1; done; kill -0 {owner} 2>/dev/null || kill -9 {p} 2>/dev/null",
            owner = std::process::id(),
            p = child.id()
        );
        let _ = Command::new("sh")
            .args(["-c", &watchdog])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let mut prom = Prometheus {
            child: Some(child),
            addr,
            dir,
            started: now_secs(),
        };
        let sock: SocketAddr = prom.addr.parse().unwrap();
        let t0 = Instant::now();
        loop {
            if TcpStream::connect_timeout(&sock, Duration::from_millis(200)).is_ok()
                && support::http_get(&prom.addr, "/-/ready").0 == 200
            {
                break;
            }
            if let Ok(Some(st)) = prom.child.as_mut().unwrap().try_wait() {
                prom.child = None;
                panic!("prometheus exited during start ({st}):\n{}", prom.log());
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "prometheus not ready on {} within 30 s:\n{}",
                prom.addr,
                prom.log()
            );
            thread::sleep(Duration::from_millis(100));
        }
        prom
    }

    fn log(&self) -> String {
        let s = fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// GET an API path; the `data` of a successful answer, or the error text.
    fn api(&self, path: &str) -> Result<Json, String> {
        let (status, body) = support::http_get(&self.addr, path);
        let json =
            Json::parse(&body).map_err(|e| format!("HTTP {status}, not JSON ({e}): {body}"))?;
        if json.str("status") != Some("success") {
            return Err(format!(
                "HTTP {status}: {} {}",
                json.str("errorType").unwrap_or(""),
                json.str("error").unwrap_or(&body)
            ));
        }
        json.get("data")
            .cloned()
            .ok_or_else(|| format!("no data in {body}"))
    }

    /// An instant query at `time` (now when None): the result series.
    fn query(&self, expr: &str, time: Option<f64>) -> Result<Vec<Json>, String> {
        let at = time.map(|t| format!("&time={t:.3}")).unwrap_or_default();
        Ok(self
            .api(&format!("/api/v1/query?query={}{at}", url_encode(expr)))?
            .arr("result")
            .to_vec())
    }

    fn query_range(
        &self,
        expr: &str,
        start: f64,
        end: f64,
        step: &str,
    ) -> Result<Vec<Json>, String> {
        let path = format!(
            "/api/v1/query_range?query={}&start={start:.3}&end={end:.3}&step={step}",
            url_encode(expr)
        );
        Ok(self.api(&path)?.arr("result").to_vec())
    }

    /// Waits (at most 30 s) until the instant query `expr` returns `series` series.
    fn wait_for(&self, expr: &str, series: usize, what: &str) {
        let t0 = Instant::now();
        loop {
            let got = self.query(expr, None);
            if got.as_ref().is_ok_and(|r| r.len() == series) {
                return;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "timed out after 30 s waiting for {what} ({expr} -> {got:?}); up: {:?}",
                self.query("up", None)
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// (labels, value) of each series of an instant query.
    fn samples(&self, expr: &str) -> Vec<(Vec<(String, String)>, f64)> {
        let result = self
            .query(expr, None)
            .unwrap_or_else(|e| panic!("query {expr}: {e}"));
        result
            .iter()
            .map(|s| {
                let labels = match s.get("metric") {
                    Some(Json::Obj(f)) => f
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                        .collect(),
                    _ => Vec::new(),
                };
                (labels, sample_value(s.arr("value")))
            })
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if thread::panicking() {
            eprintln!(
                "monitoring: prometheus log ({}):\n{}",
                self.dir.display(),
                self.log()
            );
        }
    }
}

/// `{k="v", ...}` of a query answer's series.
fn label_set(series: &Json) -> String {
    let pairs: Vec<String> = match series.get("metric") {
        Some(Json::Obj(f)) => f
            .iter()
            .map(|(k, v)| format!("{k}={:?}", v.as_str().unwrap_or("")))
            .collect(),
        _ => Vec::new(),
    };
    format!("{{{}}}", pairs.join(", "))
}

/// The value of a `[time, "value"]` pair.
fn sample_value(pair: &[Json]) -> f64 {
    pair.get(1)
        .and_then(Json::as_str)
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// True when some sample of a query answer (instant `value` or range `values`) is a finite number.
fn has_finite_sample(series: &[Json]) -> bool {
    series.iter().any(|s| {
        sample_value(s.arr("value")).is_finite()
            || s.arr("values")
                .iter()
                .any(|p| matches!(p, Json::Arr(pair) if sample_value(pair).is_finite()))
    })
}

// ------------------------------------------------------------------------------------------------
// the rebalance scenario

/// A value from kelp's own /metrics: the first series of `metric` carrying all `labels`.
fn kelp_metric(kelp: &Kelp, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let (status, body) = kelp.http_get("/metrics");
    if status != 200 {
        return None;
    }
    body.lines()
        .filter(|l| {
            l.strip_prefix(metric)
                .is_some_and(|rest| rest.starts_with('{'))
        })
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Waits (at most 60 s) until `group` is Stable with `members` members on kelp and `assigned()`
/// holds; panics with the last state seen.
fn wait_stable(
    kelp: &Kelp,
    group: &str,
    members: usize,
    step: &str,
    assigned: impl Fn() -> Result<(), String>,
) {
    let t0 = Instant::now();
    loop {
        let m = kelp_metric(kelp, "kelp_group_members", &[("group", group)]);
        let stable = kelp_metric(
            kelp,
            "kelp_group_state",
            &[("group", group), ("state", "Stable")],
        );
        let a = assigned();
        if m == Some(members as f64) && stable == Some(1.0) && a.is_ok() {
            eprintln!(
                "monitoring: {step}: Stable with {members} member(s) after {:.1} s",
                t0.elapsed().as_secs_f64()
            );
            return;
        }
        let last = format!("kelp_group_members={m:?} kelp_group_state{{state=Stable}}={stable:?} assignment: {a:?}");
        if t0.elapsed() > Duration::from_secs(60) {
            panic!("{step}: group {group} not Stable with {members} member(s) within 60 s; last: {last}\nkelp log {}", kelp.log_path().display());
        }
        thread::sleep(Duration::from_millis(100));
    }
}

fn split_of(parts: &[Vec<i32>], total: usize) -> Result<(), String> {
    let n: usize = parts.iter().map(Vec::len).sum();
    if n == total && parts.iter().all(|p| !p.is_empty()) {
        Ok(())
    } else {
        Err(format!("{parts:?}"))
    }
}

/// Join, add a member, add and remove one cleanly (leave), kill one (session expiry). After each
/// step the group is Stable on kelp and Prometheus has scraped that, so every generation is
/// recorded. Returns the surviving member.
fn rebalance_scenario(kelp: &Kelp, prom: &Prometheus, topic: &str, group: &str) -> GroupConsumer {
    let cfg = [
        ("session.timeout.ms", "6000"),
        ("heartbeat.interval.ms", "500"),
    ];
    let scraped = |members: usize| {
        let expr = format!(
            "kelp_group_members{{group=\"{group}\"}} == {members} \
             and on () kelp_group_state{{group=\"{group}\", state=\"Stable\"}} == 1"
        );
        let what = format!("Prometheus to scrape the group Stable with {members} member(s)");
        prom.wait_for(&expr, 1, &what);
    };
    let a = GroupConsumer::start_with(kelp.addr(), group, "monitoring-a", &[topic], &cfg);
    wait_stable(kelp, group, 1, "first member", || {
        split_of(&[a.partitions()], 4)
    });
    scraped(1);
    let b = PyConsumer::start_with(
        PyClient::Confluent,
        kelp.addr(),
        group,
        "monitoring-b",
        &[topic],
        &cfg,
    );
    wait_stable(kelp, group, 2, "second member joined", || {
        split_of(&[a.partitions(), b.partitions()], 4)
    });
    scraped(2);
    let c = GroupConsumer::start_with(kelp.addr(), group, "monitoring-c", &[topic], &cfg);
    wait_stable(kelp, group, 3, "third member joined", || {
        split_of(&[a.partitions(), b.partitions(), c.partitions()], 4)
    });
    scraped(3);
    c.stop();
    wait_stable(kelp, group, 2, "third member left", || {
        split_of(&[a.partitions(), b.partitions()], 4)
    });
    scraped(2);
    b.kill9();
    wait_stable(kelp, group, 1, "second member killed", || {
        split_of(&[a.partitions()], 4)
    });
    scraped(1);
    a
}

/// A consumer group (KIP-848, two confluent-kafka members with `group.protocol=consumer`): one
/// member, a second joins, the second leaves. After each step the group is Stable on kelp with its
/// partitions split and Prometheus has scraped that, so the KIP-848 panels (epochs, reconciliation,
/// heartbeats) have data. Returns the remaining member.
fn consumer_group_scenario(kelp: &Kelp, prom: &Prometheus, topic: &str, group: &str) -> PyConsumer {
    let cfg = [("group.protocol", "consumer")];
    let scraped = |members: usize| {
        let expr = format!(
            "kelp_group_members{{group=\"{group}\", protocol=\"consumer\"}} == {members} \
             and on () kelp_group_state{{group=\"{group}\", state=\"Stable\"}} == 1 \
             and on () kelp_group_members_unreconciled{{group=\"{group}\"}} == 0"
        );
        let what =
            format!("Prometheus to scrape the consumer group Stable with {members} member(s)");
        prom.wait_for(&expr, 1, &what);
    };
    let start = |name: &str| {
        PyConsumer::start_with(
            PyClient::Confluent,
            kelp.addr(),
            group,
            name,
            &[topic],
            &cfg,
        )
    };
    let a = start("monitoring-kip848-a");
    wait_stable(kelp, group, 1, "KIP-848: first member", || {
        split_of(&[a.partitions()], 4)
    });
    scraped(1);
    let b = start("monitoring-kip848-b");
    wait_stable(kelp, group, 2, "KIP-848: second member joined", || {
        split_of(&[a.partitions(), b.partitions()], 4)
    });
    scraped(2);
    b.stop();
    wait_stable(kelp, group, 1, "KIP-848: second member left", || {
        split_of(&[a.partitions()], 4)
    });
    scraped(1);
    a
}

/// The rebalance counter shows the reasons that happened, the eviction was counted, and the
/// generation went up once per rebalance.
fn check_group_counters(prom: &Prometheus, group: &str, span: u64) {
    let reasons: BTreeMap<String, f64> = prom
        .samples(&format!(
            "sum by (reason) (kelp_group_rebalances_total{{group=\"{group}\"}})"
        ))
        .into_iter()
        .map(|(labels, v)| {
            let reason = labels
                .into_iter()
                .find(|(k, _)| k == "reason")
                .map(|(_, r)| r);
            (reason.unwrap_or_default(), v)
        })
        .collect();
    eprintln!("monitoring: rebalances by reason: {reasons:?}");
    for (reason, at_least) in [("new_member", 2.0), ("leave", 1.0), ("session_expiry", 1.0)] {
        let n = reasons.get(reason).copied().unwrap_or(0.0);
        assert!(
            n >= at_least,
            "kelp_group_rebalances_total{{reason=\"{reason}\"}} should be >= {at_least}: {reasons:?}"
        );
    }
    let evicted = prom.samples(&format!(
        "sum(kelp_group_member_evictions_total{{group=\"{group}\", cause=\"session_expiry\"}})"
    ));
    assert!(
        evicted.first().is_some_and(|(_, v)| *v >= 1.0),
        "kelp_group_member_evictions_total{{cause=\"session_expiry\"}} should be >= 1: {evicted:?}"
    );
    let generation = |f: &str| {
        let expr = format!("{f}(kelp_group_generation{{group=\"{group}\"}}[{span}s])");
        prom.samples(&expr)
            .first()
            .map(|(_, v)| *v)
            .unwrap_or(f64::NAN)
    };
    let (low, high) = (generation("min_over_time"), generation("max_over_time"));
    eprintln!("monitoring: generation went from {low} to {high}");
    assert!(
        high >= low + 4.0,
        "kelp_group_generation should have gone up by at least 4 (join, join, leave, expiry): {low} -> {high}"
    );
}

/// What Grafana would put for each variable: this kelp's job, instance and group, a 1 s interval
/// (Prometheus scrapes every second), and the scenario's span as the time range.
fn grafana_values(kelp: &Kelp, group: &str, span: u64) -> BTreeMap<&'static str, String> {
    [
        ("datasource", "prometheus".to_string()),
        ("job", JOB.to_string()),
        ("instance", kelp.metrics_addr().replace('.', "\\\\.")),
        ("group", group.to_string()),
        ("protocol", PROTOCOLS.join("|")),
        ("__interval", "1s".into()),
        ("__interval_ms", "1000".into()),
        ("__rate_interval", "4s".into()),
        ("__range", format!("{span}s")),
        ("__range_s", span.to_string()),
        ("__range_ms", (span * 1000).to_string()),
    ]
    .into_iter()
    .collect()
}

/// Every panel query, as Grafana runs it: a range query over the scenario with a 1 s step (an
/// instant query at `end` for instant targets). Each must return a series with a finite sample.
fn check_panels(prom: &Prometheus, values: &BTreeMap<&str, String>, end: f64) -> Vec<String> {
    let mut failures = Vec::new();
    for pq in panel_queries() {
        let what = format!("{} / {:?} / {}", pq.dashboard, pq.panel, pq.ref_id);
        let expr = substitute(&pq.expr, values, &what);
        let answer = if pq.instant {
            prom.query(&expr, Some(end))
        } else {
            prom.query_range(&expr, prom.started, end, "1s")
        };
        match answer {
            Err(e) => failures.push(format!("{what}: {e}\n    {expr}")),
            Ok(series) if series.is_empty() => {
                failures.push(format!("{what}: no data\n    {expr}"))
            }
            Ok(series) if !has_finite_sample(&series) => {
                failures.push(format!("{what}: only NaN/Inf samples\n    {expr}"))
            }
            Ok(series) => {
                let labels: Vec<String> = series.iter().take(4).map(label_set).collect();
                eprintln!(
                    "monitoring: {:>3} series  {what}  {}",
                    series.len(),
                    labels.join(" ")
                );
            }
        }
    }
    failures
}

/// The dashboards' `label_values()` variables list this kelp's job and instance and the group.
fn check_variables(
    prom: &Prometheus,
    values: &BTreeMap<&str, String>,
    kelp: &Kelp,
    group: &str,
    end: f64,
) -> Vec<String> {
    let mut failures = Vec::new();
    for rel in DASHBOARDS {
        for (name, (kind, query)) in variables(&dashboard(rel)) {
            if kind != "query" {
                continue;
            }
            let query = substitute(&query, values, &format!("{rel} variable {name}"));
            let inner = query
                .strip_prefix("label_values(")
                .and_then(|q| q.strip_suffix(')'))
                .unwrap_or_else(|| panic!("{rel}: variable {name}: not label_values(): {query}"));
            let (selector, label) = inner
                .rsplit_once(',')
                .map(|(s, l)| (s.trim(), l.trim()))
                .unwrap_or(("", inner.trim()));
            let matcher = if selector.is_empty() {
                String::new()
            } else {
                format!("&match[]={}", url_encode(selector))
            };
            // The scenario's groups and protocols are alternatives ("a|b"): each must be listed.
            let expected: Vec<&str> = match name.as_str() {
                "job" => vec![JOB],
                "instance" => vec![kelp.metrics_addr()],
                "protocol" => PROTOCOLS.to_vec(),
                _ => group.split('|').collect(),
            };
            let path = format!(
                "/api/v1/label/{label}/values?start={:.3}&end={end:.3}{matcher}",
                prom.started
            );
            match prom.api(&path) {
                Ok(Json::Arr(vals))
                    if expected
                        .iter()
                        .all(|e| vals.iter().any(|v| v.as_str() == Some(e))) => {}
                other => failures.push(format!(
                    "{rel}: variable {name} ({query}) does not list all of {expected:?}: {other:?}"
                )),
            }
        }
    }
    failures
}

/// Every alert rule, as this Prometheus loaded it from kelp-rules.yaml: healthy, and its expression
/// without the threshold comparison returns data (an instant query at `end`).
fn check_alerts(prom: &Prometheus, end: f64) -> Vec<String> {
    let t0 = Instant::now();
    let rules = loop {
        let data = prom
            .api("/api/v1/rules")
            .unwrap_or_else(|e| panic!("/api/v1/rules: {e}"));
        let rules: Vec<Json> = data
            .arr("groups")
            .iter()
            .flat_map(|g| g.arr("rules").to_vec())
            .collect();
        if !rules.is_empty() && rules.iter().all(|r| r.str("health") != Some("unknown")) {
            break rules;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "alert rules not evaluated within 20 s: {rules:?}"
        );
        thread::sleep(Duration::from_millis(200));
    };
    let declared = repo_file(RULES)
        .lines()
        .filter(|l| l.trim().starts_with("- alert: "))
        .count();
    assert_eq!(
        rules.len(),
        declared,
        "prometheus loaded {} rules from {RULES}, which declares {declared}",
        rules.len()
    );
    let mut failures = Vec::new();
    for r in &rules {
        let name = r.str("name").unwrap_or("?");
        if r.str("health") != Some("ok") {
            failures.push(format!(
                "alert {name}: health {:?}: {:?}",
                r.str("health"),
                r.str("lastError")
            ));
        }
        let expr = strip_comparisons(r.str("query").unwrap_or(""));
        match prom.query(&expr, Some(end)) {
            Err(e) => failures.push(format!("alert {name}: {e}\n    {expr}")),
            Ok(series) if series.is_empty() => failures.push(format!(
                "alert {name}: no data without its threshold\n    {expr}"
            )),
            Ok(series) => eprintln!(
                "monitoring: {:>3} series  alert {name}  {}",
                series.len(),
                label_set(&series[0])
            ),
        }
    }
    failures
}

#[test]
fn dashboards_and_alerts_return_data_from_a_real_prometheus_during_a_rebalance() {
    let t0 = Instant::now();
    let tag = std::process::id();
    let (topic, group) = (
        format!("monitoring-{tag}"),
        format!("monitoring-group-{tag}"),
    );
    let kip848_group = format!("monitoring-kip848-{tag}");
    let kelp = Kelp::start(&[
        "--group-mode",
        "local",
        "--group-initial-rebalance-delay-ms",
        "0",
        "--lag-interval-secs",
        "1",
        "--group-consumer-session-timeout-ms",
        "6000",
        "--group-consumer-heartbeat-interval-ms",
        "500",
    ]);
    let prom = Prometheus::start(kelp.metrics_addr());
    prom.wait_for(
        &format!("up{{job=\"{JOB}\"}} == 1"),
        1,
        "the first scrape of kelp",
    );
    support::create_topic(kelp.addr(), &topic, 4);
    let produced = support::produce(kelp.addr(), &topic, 400);
    assert_eq!(produced, 400, "produce 400 messages through kelp");
    eprintln!(
        "monitoring: stack, kelp, prometheus and topic ready after {:.1} s",
        t0.elapsed().as_secs_f64()
    );

    let survivor = rebalance_scenario(&kelp, &prom, &topic, &group);
    let kip848_member = consumer_group_scenario(&kelp, &prom, &topic, &kip848_group);
    // a few more scrapes, so that short rate windows after the last rebalance have samples
    thread::sleep(Duration::from_secs(3));
    let end = now_secs();
    let span = (end - prom.started).ceil() as u64 + 1;
    eprintln!(
        "monitoring: scenario done after {:.1} s; prometheus has {span} s of data",
        t0.elapsed().as_secs_f64()
    );

    check_group_counters(&prom, &group, span);
    // Grafana with both groups selected ("All"), and both protocols.
    let both = format!("{group}|{kip848_group}");
    let values = grafana_values(&kelp, &both, span);
    let mut failures = check_panels(&prom, &values, end);
    failures.extend(check_variables(&prom, &values, &kelp, &both, end));
    failures.extend(check_alerts(&prom, end));
    eprintln!("monitoring: done after {:.1} s", t0.elapsed().as_secs_f64());
    assert!(
        failures.is_empty(),
        "{} monitoring queries failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    drop(survivor);
    drop(kip848_member);
}
