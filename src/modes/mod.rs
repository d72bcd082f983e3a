//! Which coordinator serves each consumer group: the current rule set (`rules.rs`) behind an
//! arc-swap handle, loaded from the `--config` file (`file.rs`) or fixed by `--group-mode`, and
//! replaced whole by a reload (`watch.rs`: SIGHUP, or the file changed). A request reads the
//! handle once; a reload never blocks one. An invalid file is refused and the old rules stay.

pub mod file;
pub mod rules;
mod watch;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

pub use file::{CoordinatorSettings, FileConfig};
pub use rules::{Glob, Rule, Rules};
pub use watch::{watch, OnChange};

use crate::config::{Config, GroupMode};
use crate::metrics::Metrics;

/// One loaded rule set.
#[derive(Debug)]
pub struct Snapshot {
    pub rules: Rules,
    /// Some group may be passed through: group API versions are capped at the backend's.
    pub passthrough_possible: bool,
    /// Some group may be served by kelp's coordinator.
    pub local_possible: bool,
    /// 0 for the rules kelp started with, +1 per applied reload.
    pub version: u64,
    /// The `[access]` rules (`src/access/`); `None`: no section, nothing is checked.
    pub access: Option<Arc<crate::access::Policy>>,
}

impl Snapshot {
    /// A snapshot of `rules` outside any reload history (tests, tools).
    pub fn for_rules(rules: Rules) -> Snapshot {
        Snapshot::new(rules, 0, None)
    }

    fn new(rules: Rules, version: u64, access: Option<crate::access::Policy>) -> Snapshot {
        Snapshot {
            passthrough_possible: rules.may_be(GroupMode::Passthrough),
            local_possible: rules.may_be(GroupMode::Local),
            rules,
            version,
            access: access.map(Arc::new),
        }
    }

    pub fn mode_of(&self, group: &str) -> GroupMode {
        self.rules.mode_of(group)
    }
}

/// What a reload did.
#[derive(Debug)]
pub enum Reload {
    /// The file was valid and its rules are now in effect (they may equal the old ones).
    Applied {
        old: Arc<Snapshot>,
        new: Arc<Snapshot>,
    },
    /// The file was refused (the reason); the old rules stay.
    Rejected(String),
    /// There is no config file to reload.
    NoFile,
}

/// The config file kelp reloads, and what it read at startup.
struct Source {
    path: PathBuf,
    /// `--group-mode`: the default when the file sets none.
    fallback: GroupMode,
    /// The `[coordinator]` table read at startup (a change needs a restart).
    coordinator: CoordinatorSettings,
}

/// The rule-set handle shared by every connection.
pub struct Modes {
    current: ArcSwap<Snapshot>,
    source: Option<Source>,
    /// Serializes reloads (SIGHUP and the file watcher may race).
    reloading: Mutex<()>,
    metrics: Arc<Metrics>,
}

impl Modes {
    /// Every group in `mode`, no file (`--group-mode` alone).
    pub fn fixed(mode: GroupMode, metrics: Arc<Metrics>) -> Modes {
        metrics.config_last_reload_ok.set(1);
        let snapshot = Arc::new(Snapshot::new(Rules::single(mode), 0, None));
        metrics.groups.set_modes(mode_source(snapshot.clone()));
        Modes {
            current: ArcSwap::new(snapshot),
            source: None,
            reloading: Mutex::new(()),
            metrics,
        }
    }

    /// The rules from `config`: its `--config` file if it has one (an unreadable or invalid file
    /// is an error naming the path), else `--group-mode` for every group. Also returns the file,
    /// whose `[coordinator]` settings the caller applies.
    pub fn load(
        config: &Config,
        metrics: Arc<Metrics>,
    ) -> Result<(Modes, Option<FileConfig>), String> {
        let Some(path) = &config.config else {
            return Ok((Modes::fixed(config.group_mode, metrics), None));
        };
        let (file, _) =
            file::read(path).map_err(|e| format!("--config {}: {e}", path.display()))?;
        let rules = file.rules(config.group_mode);
        warn_unreachable(path, &rules);
        if let Some(access) = &file.access {
            tracing::info!(
                path = %path.display(),
                rules = access.rules.len(),
                "access control on: what no [access] rule allows is refused (docs/SECURITY.md)"
            );
        }
        metrics.config_last_reload_ok.set(1);
        let snapshot = Arc::new(Snapshot::new(rules, 0, file.access.clone()));
        metrics.groups.set_modes(mode_source(snapshot.clone()));
        let modes = Modes {
            current: ArcSwap::new(snapshot),
            source: Some(Source {
                path: path.clone(),
                fallback: config.group_mode,
                coordinator: file.coordinator.clone(),
            }),
            reloading: Mutex::new(()),
            metrics,
        };
        Ok((modes, Some(file)))
    }

    /// The rules in effect now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// The `[access]` rules in effect now (a cheap read: no reference count taken).
    pub fn access(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// The mode `group` is served in now.
    pub fn mode_of(&self, group: &str) -> GroupMode {
        self.current.load().mode_of(group)
    }

    /// Whether some group may be passed through now (ApiVersions caps group APIs at the backend).
    pub fn passthrough_possible(&self) -> bool {
        self.current.load().passthrough_possible
    }

    /// The config file, if kelp has one.
    pub fn path(&self) -> Option<&Path> {
        self.source.as_ref().map(|s| s.path.as_path())
    }

    /// Reads the file again and, if it is valid, puts its rules in effect for the next request of
    /// every group. Counts `kelp_config_reloads_total{result}` and logs the outcome.
    pub fn reload(&self, why: &str) -> Reload {
        let Some(source) = &self.source else {
            return Reload::NoFile;
        };
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        match file::read(&source.path) {
            Ok((file, _)) => Reload::Applied {
                old: self.current.load_full(),
                new: self.apply(source, file, why),
            },
            Err(e) => {
                self.metrics
                    .config_reloads
                    .with_label_values(&["error"])
                    .inc();
                self.metrics.config_last_reload_ok.set(0);
                tracing::error!(
                    path = %source.path.display(),
                    trigger = why,
                    "config reload rejected, keeping the previous rules: {e}"
                );
                Reload::Rejected(e)
            }
        }
    }

    fn apply(&self, source: &Source, file: FileConfig, why: &str) -> Arc<Snapshot> {
        let rules = file.rules(source.fallback);
        warn_unreachable(&source.path, &rules);
        if file.coordinator != source.coordinator {
            tracing::warn!(
                path = %source.path.display(),
                "the [coordinator] settings changed; they take effect when kelp restarts"
            );
        }
        let version = self.current.load().version + 1;
        let new = Arc::new(Snapshot::new(rules, version, file.access));
        self.current.store(new.clone());
        self.metrics.config_reloads.with_label_values(&["ok"]).inc();
        self.metrics.config_last_reload_ok.set(1);
        self.metrics.groups.set_modes(mode_source(new.clone()));
        tracing::info!(
            path = %source.path.display(),
            trigger = why,
            version,
            default_mode = mode_label(new.rules.default_mode),
            rules = new.rules.rules.len(),
            access_rules = new.access.as_ref().map(|a| a.rules.len()),
            "config reloaded"
        );
        new
    }
}

/// The per-group metrics' view of `rules`: each group's mode label.
fn mode_source(rules: Arc<Snapshot>) -> crate::metrics::group::ModeOf {
    Arc::new(move |group| mode_label(rules.mode_of(group)))
}

/// The metric label of a mode.
pub fn mode_label(mode: GroupMode) -> &'static str {
    match mode {
        GroupMode::Local => "local",
        GroupMode::Passthrough => "passthrough",
    }
}

fn warn_unreachable(path: &Path, rules: &Rules) {
    for i in rules.unreachable() {
        tracing::warn!(
            path = %path.display(),
            "groups.rules[{i}] ({:?}) never applies: an earlier rule \"*\" matches every group",
            rules.rules[i].pattern.as_str()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::io::Write;

    fn write(path: &Path, text: &str) {
        let mut f = std::fs::File::create(path).unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    fn temp_file(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("kelp-modes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    fn metric(m: &Metrics, needle: &str) -> String {
        let text = String::from_utf8(m.render()).unwrap();
        text.lines()
            .find(|l| l.starts_with(needle))
            .unwrap_or_default()
            .to_string()
    }

    #[test]
    fn reload_applies_a_valid_file_and_keeps_the_old_rules_on_a_bad_one() {
        let path = temp_file("reload.toml");
        write(&path, "[groups]\ndefault_mode = \"passthrough\"\n");
        let config = Config::try_parse_from(["kelp", "--config", path.to_str().unwrap()]).unwrap();
        let metrics = Arc::new(Metrics::new());
        let (modes, _) = Modes::load(&config, metrics.clone()).unwrap();
        assert_eq!(modes.mode_of("orders-1"), GroupMode::Passthrough);
        assert!(modes.passthrough_possible());

        write(
            &path,
            "[groups]\ndefault_mode = \"passthrough\"\n[[groups.rules]]\npattern = \"orders-*\"\nmode = \"local\"\n",
        );
        let Reload::Applied { old, new } = modes.reload("test") else {
            panic!("valid file refused")
        };
        assert_eq!((old.version, new.version), (0, 1));
        assert_eq!(modes.mode_of("orders-1"), GroupMode::Local);
        assert_eq!(modes.mode_of("billing"), GroupMode::Passthrough);

        write(&path, "[groups]\ndefault_mode = \"nowhere\"\n");
        let Reload::Rejected(why) = modes.reload("test") else {
            panic!("invalid file applied")
        };
        assert!(why.contains("line 2"), "{why}");
        assert_eq!(
            modes.mode_of("orders-1"),
            GroupMode::Local,
            "old rules stay"
        );
        assert_eq!(modes.snapshot().version, 1);
        assert!(metric(&metrics, "kelp_config_reloads_total{result=\"ok\"}").ends_with(" 1"));
        assert!(metric(&metrics, "kelp_config_reloads_total{result=\"error\"}").ends_with(" 1"));
        assert!(metric(&metrics, "kelp_config_last_reload_successful").ends_with(" 0"));

        std::fs::remove_file(&path).unwrap();
        assert!(matches!(modes.reload("test"), Reload::Rejected(_)));
        assert_eq!(modes.mode_of("orders-1"), GroupMode::Local);
    }

    #[test]
    fn without_a_file_the_flag_decides() {
        let config = Config::try_parse_from(["kelp", "--group-mode", "passthrough"]).unwrap();
        let (modes, file) = Modes::load(&config, Arc::new(Metrics::new())).unwrap();
        assert!(file.is_none());
        assert_eq!(modes.mode_of("any"), GroupMode::Passthrough);
        assert!(matches!(modes.reload("test"), Reload::NoFile));
    }

    #[test]
    fn a_bad_file_at_startup_names_the_path() {
        let path = temp_file("missing.toml");
        let config = Config::try_parse_from(["kelp", "--config", path.to_str().unwrap()]).unwrap();
        let Err(e) = Modes::load(&config, Arc::new(Metrics::new())) else {
            panic!("a missing file was accepted")
        };
        assert!(
            e.starts_with("--config ") && e.contains("missing.toml"),
            "{e}"
        );
    }

    #[test]
    fn the_file_default_wins_over_the_flag_and_the_flag_fills_in() {
        let path = temp_file("fallback.toml");
        write(
            &path,
            "[[groups.rules]]\npattern = \"a*\"\nmode = \"passthrough\"\n",
        );
        let config = Config::try_parse_from(["kelp", "--config", path.to_str().unwrap()]).unwrap();
        let (modes, _) = Modes::load(&config, Arc::new(Metrics::new())).unwrap();
        assert_eq!(modes.mode_of("abc"), GroupMode::Passthrough);
        assert_eq!(modes.mode_of("b"), GroupMode::Local, "--group-mode default");
        let snapshot = modes.snapshot();
        assert!(snapshot.passthrough_possible && snapshot.local_possible);
    }
}
