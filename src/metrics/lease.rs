//! The ownership-lease series (docs/METRICS.md, "Ownership leases"): leases held, taken, renewals
//! that failed, leases lost and why, writes the epoch rule fenced, and the time this kelp served a
//! group without a valid lease (kept at 0 by construction; a non-zero value is a bug to report).

use prometheus::{Counter, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use crate::lease::Loss;

pub struct LeaseMetrics {
    /// `kelp_leases_held`: group-bucket leases this kelp holds now.
    pub held: IntGauge,
    /// `kelp_lease_buckets`: buckets the group ids hash into (the same on every kelp).
    pub buckets: IntGauge,
    /// `kelp_lease_acquisitions_total`: leases taken.
    pub acquisitions: IntCounter,
    /// `kelp_lease_requests_total`: calls to the filer's lock service (takes, renewals,
    /// give-backs, the sentinel's).
    pub requests: IntCounter,
    /// `kelp_lease_renew_failures_total`: renewals (and sentinel renewals) without a grant.
    pub renew_failures: IntCounter,
    /// `kelp_lease_losses_total{reason}`: held leases that ended (`expired`, `refused`, `released`).
    pub losses: IntCounterVec,
    /// `kelp_fenced_writes_total`: writes refused or not acknowledged because the lease that
    /// issued them ended, and stale files readers ignored.
    pub fenced_writes: IntCounter,
    /// `kelp_lease_unleased_serving_seconds_total`: time a reply for a group left this kelp after
    /// its lease deadline (must stay 0).
    pub unleased_serving: Counter,
}

impl LeaseMetrics {
    pub fn new(registry: &Registry) -> Self {
        let m = LeaseMetrics {
            held: IntGauge::new("kelp_leases_held", "Group-bucket ownership leases this kelp holds")
                .expect("static metric"),
            buckets: IntGauge::new(
                "kelp_lease_buckets",
                "Buckets the group ids hash into, one ownership lease each",
            )
            .expect("static metric"),
            acquisitions: IntCounter::new(
                "kelp_lease_acquisitions_total",
                "Ownership leases taken from the filer's lock service",
            )
            .expect("static metric"),
            requests: IntCounter::new(
                "kelp_lease_requests_total",
                "Calls to the filer's lock service: takes, renewals, give-backs and the sentinel's",
            )
            .expect("static metric"),
            renew_failures: IntCounter::new(
                "kelp_lease_renew_failures_total",
                "Lease renewals the filer did not grant (no answer or refused)",
            )
            .expect("static metric"),
            losses: IntCounterVec::new(
                Opts::new("kelp_lease_losses_total", "Held ownership leases that ended, by reason"),
                &["reason"],
            )
            .expect("static metric"),
            fenced_writes: IntCounter::new(
                "kelp_fenced_writes_total",
                "Group writes fenced by the ownership epoch: refused or unacknowledged after the lease ended, or ignored by readers",
            )
            .expect("static metric"),
            unleased_serving: Counter::new(
                "kelp_lease_unleased_serving_seconds_total",
                "Seconds a group was served past its lease deadline (must stay 0)",
            )
            .expect("static metric"),
        };
        for c in [
            Box::new(m.held.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.buckets.clone()),
            Box::new(m.acquisitions.clone()),
            Box::new(m.requests.clone()),
            Box::new(m.renew_failures.clone()),
            Box::new(m.losses.clone()),
            Box::new(m.fenced_writes.clone()),
            Box::new(m.unleased_serving.clone()),
        ] {
            registry.register(c).expect("unique metric names");
        }
        for loss in [Loss::Expired, Loss::Refused, Loss::Released] {
            m.losses.with_label_values(&[loss.label()]);
        }
        m
    }
}
