//! The Burrow-style status of one group, from its samples over a sliding window: `ok`, `warning`
//! (lag rising through the whole window), `stalled` (lag > 0 while members are Stable and the
//! committed offsets do not move, through the whole window), `stopped` (no members and lag > 0).
//! Pure: samples carry their own time; no clock, no I/O.

use std::collections::VecDeque;

/// A group's status, the `status` label of `kelp_group_lag_status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    Warning,
    Stalled,
    Stopped,
}

impl Status {
    pub const ALL: [Status; 4] = [
        Status::Ok,
        Status::Warning,
        Status::Stalled,
        Status::Stopped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warning => "warning",
            Status::Stalled => "stalled",
            Status::Stopped => "stopped",
        }
    }
}

/// What one poll saw of a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// Milliseconds on the poller's monotonic clock.
    pub at: u64,
    /// Lag summed over every partition with a commit.
    pub lag: i64,
    /// Committed offsets summed over the same partitions: unchanged means no commit moved.
    pub committed: i64,
    pub members: usize,
    /// The group was Stable (members consuming with an assignment).
    pub stable: bool,
}

/// The samples of one group that the window still needs.
#[derive(Clone, Debug, Default)]
pub struct History {
    samples: VecDeque<Sample>,
}

/// Most samples kept per group, whatever the window and interval.
const MAX_SAMPLES: usize = 1024;

impl History {
    /// Adds a sample and returns the status it gives. The window counts as covered when the
    /// oldest kept sample is at least `window_ms` old; until then only `ok`/`stopped` are given.
    pub fn push(&mut self, sample: Sample, window_ms: u64) -> Status {
        if self.samples.back().is_some_and(|last| last.at > sample.at) {
            self.samples.clear(); // time went backwards: start over
        }
        self.samples.push_back(sample);
        let start = sample.at.saturating_sub(window_ms);
        // Keep one sample at or before the window's start: it anchors "through the whole window".
        while self.samples.len() > 1 && self.samples[1].at <= start {
            self.samples.pop_front();
        }
        while self.samples.len() > MAX_SAMPLES {
            self.samples.pop_front();
        }
        self.status(window_ms)
    }

    fn status(&self, window_ms: u64) -> Status {
        let Some(now) = self.samples.back() else {
            return Status::Ok;
        };
        if now.lag <= 0 {
            return Status::Ok;
        }
        if now.members == 0 {
            return Status::Stopped;
        }
        let covered = self.samples.len() > 1
            && self
                .samples
                .front()
                .is_some_and(|s| now.at.saturating_sub(s.at) >= window_ms);
        if !covered {
            return Status::Ok;
        }
        let first = self.samples[0];
        let still = self
            .samples
            .iter()
            .all(|s| s.committed == first.committed && s.lag > 0 && s.stable && s.members > 0);
        if still {
            return Status::Stalled;
        }
        let rising = self
            .samples
            .iter()
            .zip(self.samples.iter().skip(1))
            .all(|(a, b)| b.lag >= a.lag);
        if rising && now.lag > first.lag {
            return Status::Warning;
        }
        Status::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: u64 = 10_000;

    fn sample(at: u64, lag: i64, committed: i64, members: usize) -> Sample {
        Sample {
            at,
            lag,
            committed,
            members,
            stable: members > 0,
        }
    }

    /// Feeds samples one second apart and returns the last status.
    fn feed(samples: impl IntoIterator<Item = (i64, i64, usize)>) -> Status {
        let mut h = History::default();
        let mut last = Status::Ok;
        for (i, (lag, committed, members)) in samples.into_iter().enumerate() {
            last = h.push(sample(i as u64 * 1000, lag, committed, members), WINDOW);
        }
        last
    }

    #[test]
    fn no_lag_is_ok_whatever_else() {
        assert_eq!(feed((0..20).map(|_| (0, 5, 0))), Status::Ok);
        assert_eq!(feed((0..20).map(|_| (0, 5, 3))), Status::Ok);
    }

    #[test]
    fn lag_without_members_is_stopped_at_once() {
        assert_eq!(feed([(7, 5, 0)]), Status::Stopped);
    }

    #[test]
    fn lag_with_commits_frozen_through_the_window_is_stalled() {
        assert_eq!(feed((0..=10).map(|_| (7, 5, 2))), Status::Stalled);
        // Not before the window is covered.
        assert_eq!(feed((0..10).map(|_| (7, 5, 2))), Status::Ok);
        // One commit that moved inside the window: not stalled.
        assert_eq!(
            feed((0..=10).map(|i| (7, if i == 5 { 6 } else { 5 }, 2))),
            Status::Ok
        );
    }

    #[test]
    fn a_rebalancing_group_is_not_stalled() {
        let mut h = History::default();
        let mut last = Status::Ok;
        for i in 0..=10u64 {
            let mut s = sample(i * 1000, 7, 5, 2);
            s.stable = i != 4;
            last = h.push(s, WINDOW);
        }
        assert_eq!(last, Status::Ok);
    }

    #[test]
    fn lag_rising_through_the_window_while_committing_is_warning() {
        assert_eq!(
            feed((0..=10).map(|i| (10 + i, 100 + i, 1))),
            Status::Warning
        );
        // A dip inside the window: ok.
        assert_eq!(
            feed((0..=10).map(|i| (if i == 6 { 1 } else { 10 + i }, 100 + i, 1))),
            Status::Ok
        );
    }

    #[test]
    fn the_window_slides() {
        let mut h = History::default();
        for i in 0..=10u64 {
            h.push(sample(i * 1000, 7, 5, 2), WINDOW);
        }
        // The consumer catches up, then commits freeze again with lag: stalled only once the
        // window holds nothing but frozen samples with lag (before that, lag rose from 0: warning).
        h.push(sample(11_000, 0, 12, 2), WINDOW);
        for i in 12..21u64 {
            assert_eq!(
                h.push(sample(i * 1000, 3, 12, 2), WINDOW),
                Status::Ok,
                "at {i}"
            );
        }
        assert_eq!(h.push(sample(21_000, 3, 12, 2), WINDOW), Status::Warning);
        assert_eq!(h.push(sample(22_000, 3, 12, 2), WINDOW), Status::Stalled);
    }
}
