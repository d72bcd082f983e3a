//! The reload task: reloads the config file on SIGHUP and when it changes (polled: modification
//! time and size every interval, the content hash at least every few intervals), then runs the
//! caller's hand-over for the groups whose mode changed. Every step is bounded.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{file, Modes, Reload, Snapshot};

/// Runs after a reload was applied, with the old and the new rules.
pub type OnChange = Arc<
    dyn Fn(Arc<Snapshot>, Arc<Snapshot>) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync,
>;

/// Every this many polls the content is hashed even if time and size look unchanged.
const HASH_EVERY: u32 = 5;
/// A file that fails to parse right after it changed is read once more after this pause, so a
/// writer caught mid-write is not counted as a failed reload.
const SETTLE: Duration = Duration::from_millis(300);
/// Longest a hand-over may run before the watcher goes back to watching.
const HAND_OVER_LIMIT: Duration = Duration::from_secs(60);

/// What the file looked like at the last poll.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stamp {
    Seen {
        modified: Option<SystemTime>,
        len: u64,
        hash: u64,
    },
    Unreadable(String),
}

impl Stamp {
    fn metadata(path: &Path) -> Option<(Option<SystemTime>, u64)> {
        let m = std::fs::metadata(path).ok()?;
        Some((m.modified().ok(), m.len()))
    }

    fn read(path: &Path) -> Stamp {
        let Some((modified, len)) = Stamp::metadata(path) else {
            return Stamp::Unreadable("cannot stat".into());
        };
        match file::read_bounded(path) {
            Ok(bytes) => Stamp::Seen {
                modified,
                len,
                hash: file::content_hash(&bytes),
            },
            Err(e) => Stamp::Unreadable(e),
        }
    }

    /// Whether a cheap look (time and size) says the file may have changed.
    fn looks_changed(&self, path: &Path) -> bool {
        match (self, Stamp::metadata(path)) {
            (Stamp::Seen { modified, len, .. }, Some(now)) => (*modified, *len) != now,
            (Stamp::Unreadable(_), None) => false,
            _ => true,
        }
    }

    fn same_content(&self, other: &Stamp) -> bool {
        match (self, other) {
            (
                Stamp::Seen {
                    hash: a, len: l, ..
                },
                Stamp::Seen {
                    hash: b, len: m, ..
                },
            ) => a == b && l == m,
            (Stamp::Unreadable(a), Stamp::Unreadable(b)) => a == b,
            _ => false,
        }
    }
}

/// Watches for reload triggers forever. Without a config file it only answers SIGHUP with a log
/// line (kelp must not die of SIGHUP either way).
pub async fn watch(modes: Arc<Modes>, interval: Duration, on_change: OnChange) {
    let mut hangup = hangup_signal();
    let path = modes.path().map(Path::to_path_buf);
    let mut stamp = path.as_deref().map(Stamp::read);
    let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(100)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut polls: u32 = 0;
    loop {
        let trigger = tokio::select! {
            Some(()) = recv(&mut hangup) => "SIGHUP",
            _ = ticker.tick() => "file change",
        };
        let Some(path) = path.as_deref() else {
            if trigger == "SIGHUP" {
                tracing::info!("SIGHUP: kelp runs without --config; nothing to reload");
            }
            continue;
        };
        if trigger == "file change" {
            polls = polls.wrapping_add(1);
            let look = stamp.as_ref().map_or(true, |s| s.looks_changed(path));
            if !look && polls % HASH_EVERY != 0 {
                continue;
            }
            let now = Stamp::read(path);
            let unchanged = stamp.as_ref().is_some_and(|s| s.same_content(&now));
            stamp = Some(now);
            if unchanged {
                continue;
            }
            if file::read(path).is_err() {
                tokio::time::sleep(SETTLE).await;
                stamp = Some(Stamp::read(path));
            }
        } else {
            stamp = Some(Stamp::read(path));
        }
        if let Reload::Applied { old, new } = modes.reload(trigger) {
            if tokio::time::timeout(HAND_OVER_LIMIT, on_change(old, new))
                .await
                .is_err()
            {
                tracing::warn!(
                    "the hand-over after a reload took over {HAND_OVER_LIMIT:?}; moving on"
                );
            }
        }
    }
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = Option<()>;

#[cfg(unix)]
fn hangup_signal() -> Hangup {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; the config file is still polled");
            None
        }
    }
}

#[cfg(not(unix))]
fn hangup_signal() -> Hangup {
    None
}

#[cfg(unix)]
async fn recv(hangup: &mut Hangup) -> Option<()> {
    match hangup {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn recv(_: &mut Hangup) -> Option<()> {
    std::future::pending().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, GroupMode};
    use crate::metrics::Metrics;
    use clap::Parser;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "current_thread")]
    async fn a_changed_file_is_reloaded_and_the_hand_over_runs() {
        let dir = std::env::temp_dir().join(format!("kelp-watch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("kelp.toml");
        std::fs::write(&path, "[groups]\ndefault_mode = \"passthrough\"\n").unwrap();
        let config = Config::try_parse_from(["kelp", "--config", path.to_str().unwrap()]).unwrap();
        let (modes, _) = Modes::load(&config, Arc::new(Metrics::new())).unwrap();
        let modes = Arc::new(modes);
        let changes = Arc::new(AtomicUsize::new(0));
        let seen = changes.clone();
        let on_change: OnChange = Arc::new(move |old, new| {
            let seen = seen.clone();
            Box::pin(async move {
                assert_eq!(new.version, old.version + 1);
                seen.fetch_add(1, Ordering::SeqCst);
            })
        });
        let task = tokio::spawn(watch(modes.clone(), Duration::from_millis(100), on_change));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(changes.load(Ordering::SeqCst), 0, "no change, no reload");
        std::fs::write(&path, "[groups]\ndefault_mode = \"local\"\n").unwrap();
        for _ in 0..100 {
            if modes.mode_of("g") == GroupMode::Local {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(modes.mode_of("g"), GroupMode::Local);
        for _ in 0..100 {
            if changes.load(Ordering::SeqCst) == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(changes.load(Ordering::SeqCst), 1);
        task.abort();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
