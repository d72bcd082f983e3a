//! The result table: one row per workload with the three targets side by side and kelp's ratios
//! (medians of per-round ratios, so each ratio compares runs taken moments apart), then the issue's
//! targets, each met or missed.

/// How a row's kelp-vs-baseline columns are computed.
#[derive(Clone, Copy, PartialEq)]
pub enum Compare {
    /// Higher is better; the columns are kelp / baseline.
    Ratio,
    /// Lower is better; the columns are kelp − baseline (latency, memory).
    Delta,
}

pub struct Row {
    pub backend: String,
    pub workload: String,
    pub unit: &'static str,
    /// direct, haproxy, kelp (medians across rounds).
    pub values: [Option<f64>; 3],
    /// Extra text after each value (msgs/s for throughput rows).
    pub extra: [String; 3],
    pub compare: Compare,
    /// kelp vs direct and kelp vs haproxy.
    pub vs: [Option<f64>; 2],
}

pub fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

fn number(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn cell(v: Option<f64>, unit: &str, extra: &str) -> String {
    match v {
        Some(v) if extra.is_empty() => format!("{} {unit}", number(v)),
        Some(v) => format!("{} {unit} ({extra})", number(v)),
        None => "—".into(),
    }
}

fn compared(v: Option<f64>, compare: Compare, unit: &str) -> String {
    match (v, compare) {
        (None, _) => "—".into(),
        (Some(v), Compare::Ratio) => format!("{v:.3}×"),
        (Some(v), Compare::Delta) => {
            format!("{}{} {unit}", if v >= 0.0 { "+" } else { "" }, number(v))
        }
    }
}

/// `middle` names the second target: haproxy, or a baseline kelp build in an A/B run.
pub fn print_table(rows: &[Row], middle: &str) {
    let label = if middle == "haproxy" {
        "haproxy (L4)"
    } else {
        middle
    };
    println!(
        "| backend | workload | direct | {label} | kelp | kelp vs direct | kelp vs {middle} |"
    );
    println!("|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.backend,
            r.workload,
            cell(r.values[0], r.unit, &r.extra[0]),
            cell(r.values[1], r.unit, &r.extra[1]),
            cell(r.values[2], r.unit, &r.extra[2]),
            compared(r.vs[0], r.compare, r.unit),
            compared(r.vs[1], r.compare, r.unit),
        );
    }
}

/// One of the targets, evaluated on the synthetic backend's rows.
struct Target {
    what: &'static str,
    /// Rows whose workload starts with this prefix.
    prefix: &'static str,
    /// Which value: 0 = kelp vs direct, 1 = kelp vs haproxy, 2 = kelp's own value.
    column: usize,
    limit: f64,
    at_least: bool,
}

const TARGETS: [Target; 10] = [
    Target {
        what: "produce ≥ 0.98 × direct",
        prefix: "produce",
        column: 0,
        limit: 0.98,
        at_least: true,
    },
    Target {
        what: "produce ≥ 0.95 × L4 relay",
        prefix: "produce",
        column: 1,
        limit: 0.95,
        at_least: true,
    },
    Target {
        what: "fetch ≥ 0.98 × direct",
        prefix: "fetch",
        column: 0,
        limit: 0.98,
        at_least: true,
    },
    Target {
        what: "fetch ≥ 0.95 × L4 relay",
        prefix: "fetch",
        column: 1,
        limit: 0.95,
        at_least: true,
    },
    Target {
        what: "added latency p50 ≤ 50 µs",
        prefix: "latency p50",
        column: 0,
        limit: 50.0,
        at_least: false,
    },
    Target {
        what: "added latency p99 ≤ 200 µs",
        prefix: "latency p99 ",
        column: 0,
        limit: 200.0,
        at_least: false,
    },
    Target {
        what: "CPU ≤ 1 ms per MB forwarded",
        prefix: "CPU per MB",
        column: 2,
        limit: 1.0,
        at_least: false,
    },
    Target {
        what: "RSS ≤ 16 MiB idle",
        prefix: "RSS at start",
        column: 2,
        limit: 16.0,
        at_least: false,
    },
    Target {
        what: "RSS ≤ 64 KiB per idle connection",
        prefix: "RSS per idle",
        column: 2,
        limit: 64.0,
        at_least: false,
    },
    Target {
        what: "(peak RSS under load, for the record)",
        prefix: "RSS peak",
        column: 2,
        limit: f64::INFINITY,
        at_least: false,
    },
];

pub fn print_targets(rows: &[Row], backend: &str) {
    println!();
    println!("targets (issue 10), on the {backend} backend; the worst row counts:");
    for t in &TARGETS {
        let values: Vec<(f64, &str)> = rows
            .iter()
            .filter(|r| r.backend == backend && r.workload.starts_with(t.prefix))
            .filter_map(|r| {
                let v = if t.column == 2 {
                    r.values[2]
                } else {
                    r.vs[t.column]
                };
                v.map(|v| (v, r.workload.as_str()))
            })
            .collect();
        let worst = values.iter().copied().reduce(|a, b| {
            let b_worse = if t.at_least { b.0 < a.0 } else { b.0 > a.0 };
            if b_worse {
                b
            } else {
                a
            }
        });
        match worst {
            None => println!("- {}: not measured", t.what),
            Some((v, row)) => {
                let met = if t.at_least {
                    v >= t.limit
                } else {
                    v <= t.limit
                };
                let verdict = if t.limit.is_infinite() {
                    "info"
                } else if met {
                    "MET"
                } else {
                    "MISSED"
                };
                println!("- {}: {verdict} (worst {} in \"{row}\")", t.what, number(v));
            }
        }
    }
}
