//! The lease rules, sans-IO: what to ask the filer's lock service next for every bucket, and when
//! a held lease may be served. Time comes in as an argument (`Instant`s the driver reads); the
//! driver (`driver.rs`) sends the requests and feeds the answers back. No tokio, no sockets.
//!
//! The rules (docs/ARCHITECTURE.md, "Ownership leases"):
//! - A held lease is valid until `sent + ttl − margin`, where `sent` is when the request that took
//!   or last renewed it left this kelp: the filer starts its `ttl` after it received that request,
//!   so this kelp stops serving at least `margin` before the filer can grant the lease to anyone
//!   else (the margin covers clock-rate differences).
//! - A lease freshly taken is served at once only when the previous holder is known to have
//!   stopped: this kelp saw the lease held by another in an earlier round and the filer has not
//!   forgotten its leases since (the *sentinel*: a lease of this kelp's own that the driver renews
//!   before and after every round; if the filer restarted, the sentinel's renewal is refused and
//!   the *lineage* moves on). Otherwise the new holder waits a whole `ttl` first, so a holder the
//!   filer forgot (a restarted filer) has run out of its deadline.
//! - A renewal the filer refuses ends the lease at once; a renewal that gets no answer keeps it
//!   until its deadline.

use std::time::{Duration, Instant};

/// The lease timings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// What the filer is asked for (whole seconds).
    pub ttl: Duration,
    /// How often held leases are renewed and wanted ones tried.
    pub round: Duration,
    /// How much earlier than the filer this kelp lets a lease go.
    pub margin: Duration,
}

impl Timing {
    /// Renewals four times a lease and a quarter of it as the margin: three renewals in a row
    /// may fail before the lease is given up.
    pub fn from_ttl(ttl: Duration) -> Timing {
        Timing {
            ttl,
            round: ttl / 4,
            margin: ttl / 4,
        }
    }
}

/// What the filer answered to a lock request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Taken or renewed; the token renews it next time.
    Granted { token: String },
    /// Someone else holds it.
    Held { owner: String },
    /// The filer refused the token (the lease expired, or the filer forgot it).
    Refused(String),
    /// No answer: timeout, connection refused, a transport error.
    Failed(String),
}

/// What to ask the filer about one lease this round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ask {
    /// Take it (empty renew token).
    Take,
    /// Renew it with this token.
    Renew(String),
    /// Give it back (after the shell stopped serving it).
    Give(String),
}

/// Why a held lease ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    /// Its deadline passed without a renewal.
    Expired,
    /// The filer refused the renewal.
    Refused,
    /// This kelp gave it back (no longer the preferred holder).
    Released,
}

impl Loss {
    pub fn label(self) -> &'static str {
        match self {
            Loss::Expired => "expired",
            Loss::Refused => "refused",
            Loss::Released => "released",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    /// Not held. `held_in`: the lineage in which the filer last answered that someone else holds
    /// it (reset when this kelp stops wanting it).
    Free { held_in: Option<u64> },
    Held {
        token: String,
        /// Served from then (a fresh take waits, see the module docs); `None` while the round
        /// that took it still has to confirm the lineage.
        from: Option<Instant>,
        /// When the take was sent, in case the lineage does not confirm.
        taken: Instant,
        until: Instant,
    },
}

/// One lease (one bucket of groups).
#[derive(Clone, Debug)]
pub struct Lease {
    state: State,
    /// One more per fresh take: a write issued in one term is acknowledged only in that term.
    term: u64,
    /// Owner named by the filer when it last refused a take.
    holder: Option<String>,
}

impl Default for Lease {
    fn default() -> Self {
        Lease {
            state: State::Free { held_in: None },
            term: 0,
            holder: None,
        }
    }
}

/// What changed for the shell after an answer or a tick.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    None,
    /// Taken (not yet necessarily servable: see [`Lease::servable`]).
    Taken,
    Lost(Loss),
}

impl Lease {
    pub fn term(&self) -> u64 {
        self.term
    }

    pub fn held(&self) -> bool {
        matches!(self.state, State::Held { .. })
    }

    /// Who the filer last said holds it (when this kelp does not).
    pub fn holder(&self) -> Option<&str> {
        self.holder.as_deref()
    }

    /// Whether this kelp may serve the lease's groups at `now`.
    pub fn servable(&self, now: Instant) -> bool {
        match &self.state {
            State::Held { from, until, .. } => from.is_some_and(|f| now >= f) && now < *until,
            State::Free { .. } => false,
        }
    }

    /// When serving may start (a held lease waiting out its predecessor) and when it must stop.
    pub fn window(&self) -> Option<(Option<Instant>, Instant)> {
        match &self.state {
            State::Held { from, until, .. } => Some((*from, *until)),
            State::Free { .. } => None,
        }
    }

    /// What to ask this round (`want`: whether this kelp should hold it), and what changed for
    /// the shell. `Give` means the lease is already ended here: the caller stops serving before
    /// it sends the request. A lease past its deadline ends first (and is then taken anew, in a
    /// new term).
    pub fn ask(&mut self, now: Instant, want: bool) -> (Option<Ask>, Change) {
        let expired = self.expire(now);
        let (ask, change) = match (&self.state, want) {
            (State::Held { token, .. }, true) => (Some(Ask::Renew(token.clone())), Change::None),
            (State::Held { token, .. }, false) => {
                let token = token.clone();
                self.state = State::Free { held_in: None };
                (Some(Ask::Give(token)), Change::Lost(Loss::Released))
            }
            (State::Free { .. }, true) => (Some(Ask::Take), Change::None),
            (State::Free { .. }, false) => {
                self.state = State::Free { held_in: None };
                self.holder = None;
                (None, Change::None)
            }
        };
        match expired {
            Change::None => (ask, change),
            lost => (ask, lost),
        }
    }

    /// The filer's answer to `ask`, sent at `sent`, in `lineage` (the sentinel's, when the round
    /// began).
    pub fn answered(
        &mut self,
        timing: &Timing,
        ask: &Ask,
        sent: Instant,
        now: Instant,
        lineage: u64,
        answer: Answer,
    ) -> Change {
        match (ask, answer) {
            (Ask::Give(_), _) => Change::None,
            (Ask::Take, Answer::Granted { token }) => {
                if self.held() {
                    return Change::None;
                }
                let State::Free { held_in } = self.state else {
                    return Change::None;
                };
                self.term += 1;
                self.holder = None;
                // Served at once only if the predecessor was seen in this lineage and the round
                // confirms the lineage afterwards (`confirm`); otherwise after a whole ttl.
                let from = (held_in != Some(lineage)).then_some(sent + timing.ttl);
                self.state = State::Held {
                    token,
                    from,
                    taken: sent,
                    until: sent + timing.ttl - timing.margin,
                };
                Change::Taken
            }
            (Ask::Take, Answer::Held { owner }) => {
                if let State::Free { held_in } = &mut self.state {
                    *held_in = Some(lineage);
                }
                self.holder = Some(owner);
                Change::None
            }
            (Ask::Take, Answer::Refused(_) | Answer::Failed(_)) => Change::None,
            (Ask::Renew(sent_token), Answer::Granted { token }) => match &mut self.state {
                State::Held {
                    token: held, until, ..
                } if held == sent_token => {
                    *held = token;
                    *until = (*until).max(sent + timing.ttl - timing.margin);
                    self.expire(now)
                }
                _ => Change::None,
            },
            (Ask::Renew(sent_token), Answer::Refused(_) | Answer::Held { .. }) => {
                match &self.state {
                    State::Held { token, .. } if token == sent_token => {
                        self.state = State::Free { held_in: None };
                        Change::Lost(Loss::Refused)
                    }
                    _ => Change::None,
                }
            }
            (Ask::Renew(_), Answer::Failed(_)) => self.expire(now),
        }
    }

    /// The round that took the lease ended: `confirmed` when the sentinel's lineage held from
    /// before the take to after it.
    pub fn confirm(&mut self, timing: &Timing, confirmed: bool, now: Instant) {
        if let State::Held { from, taken, .. } = &mut self.state {
            if from.is_none() {
                *from = Some(if confirmed { now } else { *taken + timing.ttl });
            }
        }
    }

    /// Ends the lease if its deadline passed.
    pub fn expire(&mut self, now: Instant) -> Change {
        match &self.state {
            State::Held { until, .. } if now >= *until => {
                self.state = State::Free { held_in: None };
                Change::Lost(Loss::Expired)
            }
            _ => Change::None,
        }
    }
}

/// The sentinel: a lease of this kelp's own whose survival proves the filer has not forgotten
/// its leases. The lineage moves on whenever it might have.
#[derive(Clone, Debug, Default)]
pub struct Sentinel {
    token: Option<String>,
    lineage: u64,
}

impl Sentinel {
    pub fn lineage(&self) -> u64 {
        self.lineage
    }

    pub fn ask(&self) -> Ask {
        match &self.token {
            Some(t) => Ask::Renew(t.clone()),
            None => Ask::Take,
        }
    }

    /// The answer to [`Sentinel::ask`]; returns whether the lineage held.
    pub fn answered(&mut self, ask: &Ask, answer: Answer) -> bool {
        match (ask, answer) {
            (Ask::Renew(_), Answer::Granted { token }) => {
                self.token = Some(token);
                true
            }
            (Ask::Take, Answer::Granted { token }) => {
                self.token = Some(token);
                self.lineage += 1;
                false
            }
            (_, Answer::Failed(_)) => false,
            (_, Answer::Refused(_) | Answer::Held { .. }) => {
                self.token = None;
                self.lineage += 1;
                false
            }
            (Ask::Give(_), _) => false,
        }
    }
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
