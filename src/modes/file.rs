//! kelp's TOML config file (`--config`): group mode rules (reloaded live) and coordinator settings
//! (read at startup). Parsing and validation only; every error names the key and its line.
//!
//! ```toml
//! [groups]
//! default_mode = "passthrough"      # optional; --group-mode otherwise
//!
//! [[groups.rules]]                  # ordered; the first pattern matching the group id wins
//! pattern = "orders-*"
//! mode = "local"
//!
//! [coordinator]                     # optional; same names as the flags; a flag or KELP_* wins
//! group_initial_rebalance_delay_ms = 3000
//!
//! [access]                          # optional; reloaded live; see src/access/file.rs
//! ```

use serde::Deserialize;
use toml::Spanned;

use super::rules::{Glob, Rule, Rules, MAX_RULES};
use crate::config::{Config, GroupMode};

/// Largest config file read, in bytes.
pub const MAX_FILE_BYTES: usize = 1 << 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToml {
    groups: Option<GroupsToml>,
    coordinator: Option<CoordinatorSettings>,
    access: Option<crate::access::file::AccessToml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupsToml {
    default_mode: Option<ModeToml>,
    #[serde(default)]
    rules: Vec<RuleToml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleToml {
    pattern: Spanned<String>,
    mode: ModeToml,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum ModeToml {
    Local,
    Passthrough,
}

impl From<ModeToml> for GroupMode {
    fn from(m: ModeToml) -> GroupMode {
        match m {
            ModeToml::Local => GroupMode::Local,
            ModeToml::Passthrough => GroupMode::Passthrough,
        }
    }
}

/// The `[coordinator]` table: each key is the flag of the same name (`--group-max-size` →
/// `group_max_size`). Read at startup; a flag or `KELP_*` variable given explicitly wins.
#[derive(Deserialize, Debug, Clone, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CoordinatorSettings {
    pub group_min_session_timeout_ms: Option<i32>,
    pub group_max_session_timeout_ms: Option<i32>,
    pub group_initial_rebalance_delay_ms: Option<i32>,
    pub group_max_size: Option<u64>,
    pub offset_metadata_max_bytes: Option<usize>,
    pub offsets_retention_minutes: Option<u64>,
    pub group_consumer_session_timeout_ms: Option<i32>,
    pub group_consumer_heartbeat_interval_ms: Option<i32>,
    pub group_consumer_max_size: Option<u64>,
    pub group_consumer_assignors: Option<Vec<String>>,
    pub group_consumer_migration_policy: Option<String>,
    pub topic_metadata_interval_ms: Option<u64>,
}

impl CoordinatorSettings {
    fn validate(&self) -> Result<(), String> {
        let positive = |key: &str, v: Option<i64>| match v {
            Some(v) if v < 1 => Err(format!("coordinator.{key} = {v}: must be at least 1")),
            _ => Ok(()),
        };
        positive(
            "group_min_session_timeout_ms",
            self.group_min_session_timeout_ms.map(i64::from),
        )?;
        positive(
            "group_max_session_timeout_ms",
            self.group_max_session_timeout_ms.map(i64::from),
        )?;
        if let Some(v) = self.group_initial_rebalance_delay_ms.filter(|v| *v < 0) {
            return Err(format!(
                "coordinator.group_initial_rebalance_delay_ms = {v}: must be at least 0"
            ));
        }
        if let Some(v) = self
            .group_max_size
            .filter(|v| *v < 1 || *v > i32::MAX as u64)
        {
            return Err(format!(
                "coordinator.group_max_size = {v}: must be between 1 and {}",
                i32::MAX
            ));
        }
        positive(
            "group_consumer_session_timeout_ms",
            self.group_consumer_session_timeout_ms.map(i64::from),
        )?;
        positive(
            "group_consumer_heartbeat_interval_ms",
            self.group_consumer_heartbeat_interval_ms.map(i64::from),
        )?;
        if let Some(v) = self
            .group_consumer_max_size
            .filter(|v| *v < 1 || *v > i32::MAX as u64)
        {
            return Err(format!(
                "coordinator.group_consumer_max_size = {v}: must be between 1 and {}",
                i32::MAX
            ));
        }
        if let Some(names) = &self.group_consumer_assignors {
            let known = |a: &String| crate::group::consumer::Assignor::by_name(a).is_some();
            if names.is_empty() || !names.iter().all(known) {
                return Err(format!(
                    "coordinator.group_consumer_assignors = {names:?}: name one or more of uniform, range"
                ));
            }
        }
        if self.offsets_retention_minutes == Some(0) {
            return Err("coordinator.offsets_retention_minutes = 0: must be at least 1".into());
        }
        if let Some(v) = self
            .topic_metadata_interval_ms
            .filter(|v| !(100..=3_600_000).contains(v))
        {
            return Err(format!(
                "coordinator.topic_metadata_interval_ms = {v}: must be between 100 and 3600000"
            ));
        }
        Ok(())
    }

    /// Puts the file's values into `config`, except where `explicit(flag id)` says the flag or its
    /// environment variable was given. Returns the settings it applied, as `key = value` strings.
    pub fn apply(&self, config: &mut Config, explicit: &dyn Fn(&str) -> bool) -> Vec<String> {
        let mut applied = Vec::new();
        macro_rules! set {
            ($field:ident) => {
                if let Some(v) = self.$field {
                    if !explicit(stringify!($field)) {
                        config.$field = v;
                        applied.push(format!("{} = {}", stringify!($field), v));
                    }
                }
            };
        }
        set!(group_min_session_timeout_ms);
        set!(group_max_session_timeout_ms);
        set!(group_initial_rebalance_delay_ms);
        set!(group_max_size);
        set!(offset_metadata_max_bytes);
        set!(offsets_retention_minutes);
        set!(group_consumer_session_timeout_ms);
        set!(group_consumer_heartbeat_interval_ms);
        set!(group_consumer_max_size);
        if let Some(v) = &self.group_consumer_migration_policy {
            if !explicit("group_consumer_migration_policy") {
                config.group_consumer_migration_policy = v.clone();
                applied.push(format!("group_consumer_migration_policy = {v:?}"));
            }
        }
        if let Some(v) = &self.group_consumer_assignors {
            if !explicit("group_consumer_assignors") {
                config.group_consumer_assignors = v.clone();
                applied.push(format!("group_consumer_assignors = {v:?}"));
            }
        }
        set!(topic_metadata_interval_ms);
        applied
    }
}

/// A parsed, valid config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileConfig {
    /// `[groups] default_mode`, if the file sets it.
    pub default_mode: Option<GroupMode>,
    pub rules: Vec<Rule>,
    pub coordinator: CoordinatorSettings,
    /// `[access]` (`src/access/`): absent, every client may do everything.
    pub access: Option<crate::access::Policy>,
}

impl FileConfig {
    /// The rule set, with `fallback` (`--group-mode`) as the default when the file sets none.
    pub fn rules(&self, fallback: GroupMode) -> Rules {
        Rules {
            default_mode: self.default_mode.unwrap_or(fallback),
            rules: self.rules.clone(),
        }
    }
}

/// Line and column (from 1) of byte `at` in `text`.
fn position(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..at.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Parses and validates the text of a config file. The error is one line: where, and what.
pub fn parse(text: &str) -> Result<FileConfig, String> {
    if text.len() > MAX_FILE_BYTES {
        return Err(format!(
            "the file is {} bytes (at most {MAX_FILE_BYTES})",
            text.len()
        ));
    }
    let file: FileToml = toml::from_str(text).map_err(|e| {
        let message = e.message().trim().replace('\n', " ");
        match e.span() {
            Some(span) => {
                let (line, column) = position(text, span.start);
                format!("line {line}, column {column}: {message}")
            }
            None => message,
        }
    })?;
    let groups = file.groups.unwrap_or(GroupsToml {
        default_mode: None,
        rules: Vec::new(),
    });
    if groups.rules.len() > MAX_RULES {
        return Err(format!(
            "groups.rules has {} rules (at most {MAX_RULES})",
            groups.rules.len()
        ));
    }
    let mut rules = Vec::with_capacity(groups.rules.len());
    for (i, rule) in groups.rules.into_iter().enumerate() {
        let pattern = Glob::new(rule.pattern.get_ref()).map_err(|why| {
            let (line, _) = position(text, rule.pattern.span().start);
            format!(
                "line {line}: groups.rules[{i}].pattern {:?}: {why}",
                rule.pattern.get_ref()
            )
        })?;
        rules.push(Rule {
            pattern,
            mode: rule.mode.into(),
        });
    }
    let coordinator = file.coordinator.unwrap_or_default();
    coordinator.validate()?;
    let access = file
        .access
        .map(|a| crate::access::file::compile(a, |at| position(text, at).0))
        .transpose()?;
    Ok(FileConfig {
        default_mode: groups.default_mode.map(GroupMode::from),
        rules,
        coordinator,
        access,
    })
}

/// Reads and parses the file at `path`. Bounded: a file over `MAX_FILE_BYTES` is refused.
pub fn read(path: &std::path::Path) -> Result<(FileConfig, u64), String> {
    let bytes = read_bounded(path)?;
    let text = std::str::from_utf8(&bytes).map_err(|e| format!("not UTF-8: {e}"))?;
    Ok((parse(text)?, content_hash(&bytes)))
}

/// The file's bytes, at most `MAX_FILE_BYTES + 1` of them.
pub fn read_bounded(path: &std::path::Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    Ok(bytes)
}

/// FNV-1a over the file's bytes: enough to tell whether the content changed.
pub fn content_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    const CHART: &str = r#"
# kelp's config file (KELP_CONFIG).
[groups]
default_mode = "passthrough"

[[groups.rules]]
pattern = "orders-*"
mode = "local"

[[groups.rules]]
pattern = "*-legacy"
mode = "passthrough"
"#;

    #[test]
    fn the_charts_format_parses() {
        let f = parse(CHART).unwrap();
        assert_eq!(f.default_mode, Some(GroupMode::Passthrough));
        let rules = f.rules(GroupMode::Local);
        assert_eq!(rules.mode_of("orders-audit"), GroupMode::Local);
        assert_eq!(rules.mode_of("orders-legacy"), GroupMode::Local);
        assert_eq!(rules.mode_of("billing-legacy"), GroupMode::Passthrough);
        assert_eq!(rules.mode_of("billing"), GroupMode::Passthrough);
    }

    /// The `kelp.toml` that deploy/kubernetes/ ships (what the Helm chart renders for the example
    /// values) is a valid config file.
    #[test]
    fn the_shipped_configmap_parses() {
        let yaml = include_str!("../../deploy/kubernetes/kelp-config.yaml");
        let start = yaml.find("kelp.toml: |").expect("a kelp.toml key");
        let text: String = yaml[start..]
            .lines()
            .skip(1)
            .take_while(|l| l.is_empty() || l.starts_with("    "))
            .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
            .collect();
        let f = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(f.default_mode, Some(GroupMode::Passthrough));
        assert!(!f.rules.is_empty());
    }

    #[test]
    fn an_empty_file_keeps_the_flag_default() {
        let f = parse("").unwrap();
        assert_eq!(f.rules(GroupMode::Local), Rules::single(GroupMode::Local));
        let f = parse("[groups]\n").unwrap();
        assert_eq!(
            f.rules(GroupMode::Passthrough).default_mode,
            GroupMode::Passthrough
        );
    }

    #[test]
    fn errors_name_the_line_and_the_key() {
        let e = parse("[groups]\ndefualt_mode = \"local\"\n").unwrap_err();
        assert!(e.starts_with("line 2"), "{e}");
        assert!(e.contains("defualt_mode"), "{e}");
        let e = parse("[groups]\ndefault_mode = \"remote\"\n").unwrap_err();
        assert!(e.starts_with("line 2") && e.contains("remote"), "{e}");
        let e = parse("[[groups.rules]]\npattern = \"a\"\n").unwrap_err();
        assert!(e.contains("mode"), "{e}");
        let e = parse("[[groups.rules]]\nmode = \"local\"\npattern = \"x\\\\\"\n").unwrap_err();
        assert!(e.starts_with("line 3: groups.rules[0].pattern"), "{e}");
        let e = parse("[groups\n").unwrap_err();
        assert!(e.starts_with("line 1"), "{e}");
        assert!(!e.contains('\n'), "one line: {e}");
        let e = parse("[coordinator]\ngroup_max_size = 0\n").unwrap_err();
        assert!(e.contains("coordinator.group_max_size"), "{e}");
        let e = parse("[coordinator]\ntopic_metadata_interval_ms = 5\n").unwrap_err();
        assert!(e.contains("coordinator.topic_metadata_interval_ms"), "{e}");
        let e = parse("[coordinator]\nsession_timeout = 1\n").unwrap_err();
        assert!(e.contains("session_timeout"), "{e}");
        let e = parse("x = 1\n").unwrap_err();
        assert!(e.contains("`x`"), "{e}");
    }

    #[test]
    fn coordinator_settings_apply_unless_a_flag_was_given() {
        let f = parse(
            "[coordinator]\ngroup_initial_rebalance_delay_ms = 0\ngroup_max_size = 10\n\
             offsets_retention_minutes = 60\ntopic_metadata_interval_ms = 2000\n",
        )
        .unwrap();
        let mut config = Config::try_parse_from(["kelp"]).unwrap();
        let applied = f
            .coordinator
            .apply(&mut config, &|id| id == "group_max_size");
        assert_eq!(config.group_initial_rebalance_delay_ms, 0);
        assert_eq!(config.offsets_retention_minutes, 60);
        assert_eq!(config.group_max_size, i32::MAX as u64, "the flag wins");
        assert_eq!(config.topic_metadata_interval_ms, 2000);
        assert_eq!(applied.len(), 3, "{applied:?}");
    }

    #[test]
    fn consumer_group_settings_come_from_the_coordinator_table() {
        let f = parse(
            "[coordinator]\ngroup_consumer_session_timeout_ms = 6000\n\
             group_consumer_heartbeat_interval_ms = 500\ngroup_consumer_assignors = [\"range\"]\n",
        )
        .unwrap();
        let mut config = Config::try_parse_from(["kelp"]).unwrap();
        f.coordinator.apply(&mut config, &|_| false);
        config.validate().unwrap();
        let group = config.group_config();
        assert_eq!(group.consumer.session_timeout_ms, 6000);
        assert_eq!(group.consumer.heartbeat_interval_ms, 500);
        assert_eq!(
            group.consumer.assignors,
            vec![crate::group::consumer::Assignor::Range]
        );
        let e = parse(
            "[coordinator]
group_consumer_assignors = [\"sticky\"]
",
        )
        .unwrap_err();
        assert!(e.contains("coordinator.group_consumer_assignors"), "{e}");
        // Kafka's rule: the heartbeat interval must be below the session timeout.
        let mut config = Config::try_parse_from([
            "kelp",
            "--group-consumer-session-timeout-ms",
            "1000",
            "--group-consumer-heartbeat-interval-ms",
            "1000",
        ])
        .unwrap();
        let e = config.validate().unwrap_err();
        assert!(e.contains("--group-consumer-heartbeat-interval-ms"), "{e}");
        config.group_consumer_heartbeat_interval_ms = 999;
        config.validate().unwrap();
    }

    #[test]
    fn oversized_files_are_refused() {
        let big = "#".repeat(MAX_FILE_BYTES + 1);
        assert!(parse(&big).unwrap_err().contains("bytes"));
    }

    #[test]
    fn the_hash_sees_every_byte() {
        assert_ne!(content_hash(b"mode = 1"), content_hash(b"mode = 2"));
        assert_eq!(content_hash(b"a"), content_hash(b"a"));
    }
}
