//! Discovery and ownership without sockets: a resolver and a probe the test drives.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;

/// Answers what the test last set.
#[derive(Clone, Default)]
struct FakeDns(Arc<Mutex<Vec<String>>>);

impl FakeDns {
    fn set(&self, addrs: &[&str]) {
        *self.0.lock().unwrap() = addrs.iter().map(|a| a.to_string()).collect();
    }
}

impl Resolve for FakeDns {
    fn resolve(&self) -> Resolved {
        let addrs = self.0.lock().unwrap().clone();
        Box::pin(async move { Ok(addrs) })
    }
}

/// Every peer answers except the ones marked down.
#[derive(Clone, Default)]
struct FakeProbe(Arc<Mutex<HashSet<String>>>);

impl Probe for FakeProbe {
    fn probe<'a>(
        &'a self,
        addr: &'a str,
    ) -> Pin<Box<dyn Future<Output = Option<BackendRanges>> + Send + 'a>> {
        let up = !self.0.lock().unwrap().contains(addr);
        Box::pin(async move { up.then(BackendRanges::new) })
    }
}

fn watch(me: &str, dns: &FakeDns, probe: &FakeProbe) -> Watch {
    let mut w = Watch::new(
        Peers::new(me.to_string(), Duration::from_millis(500)),
        Box::new(dns.clone()),
        Arc::new(probe.clone()),
        Arc::new(Metrics::new()),
        Duration::from_millis(500),
        Duration::ZERO, // resolve every round
    );
    w.dns_every = Duration::ZERO;
    w
}

fn owners(peers: &Peers, groups: &[String]) -> Vec<Owner> {
    groups.iter().map(|g| peers.owner(g)).collect()
}

fn groups() -> Vec<String> {
    (0..300).map(|i| format!("group-{i}")).collect()
}

const A: &str = "10.1.0.1:9094";
const B: &str = "10.1.0.2:9094";
const C: &str = "10.1.0.3:9094";
const D: &str = "10.1.0.4:9094";

#[tokio::test]
async fn every_peer_names_the_same_owner() {
    let dns = FakeDns::default();
    let probe = FakeProbe::default();
    dns.set(&[A, B, C]);
    let mut views = vec![
        watch(A, &dns, &probe),
        watch(B, &dns, &probe),
        watch(C, &dns, &probe),
    ];
    for w in &mut views {
        w.round().await;
        assert_eq!(w.peers.view().live, vec![A, B, C]);
    }
    for g in groups() {
        let named: HashSet<String> = views
            .iter()
            .map(|w| match w.peers.owner(&g) {
                Owner::Me => w.peers.me().to_string(),
                Owner::Peer(p) => p,
            })
            .collect();
        assert_eq!(named.len(), 1, "{g}: {named:?}");
        let owner = named.into_iter().next().unwrap();
        assert_eq!(
            hash::group_owner(&[A.into(), B.into(), C.into()], &g, 32),
            Some(owner.as_str())
        );
    }
}

#[tokio::test]
async fn a_dns_change_moves_exactly_the_groups_rendezvous_hashing_says() {
    let dns = FakeDns::default();
    let probe = FakeProbe::default();
    dns.set(&[A, B, C]);
    let mut w = watch(A, &dns, &probe);
    w.round().await;
    let version = w.peers.view().version;
    let gs = groups();
    let before = owners(&w.peers, &gs);

    // A pod is added: only groups D wins move, all of them to D.
    dns.set(&[A, B, C, D]);
    w.round().await;
    assert_eq!(w.peers.view().version, version + 1);
    let after = owners(&w.peers, &gs);
    let mut moved = 0;
    for ((g, b), a) in gs.iter().zip(&before).zip(&after) {
        if b != a {
            moved += 1;
            assert_eq!(*a, Owner::Peer(D.to_string()), "{g} moved to {a:?}");
        }
    }
    assert!(
        (40..120).contains(&moved),
        "{moved} of 300 moved to the 4th peer"
    );

    // The same answer again changes nothing.
    w.round().await;
    assert_eq!(w.peers.view().version, version + 1);

    // The pod goes away again: every group is back where it was.
    dns.set(&[A, B, C]);
    w.round().await;
    assert_eq!(owners(&w.peers, &gs), before);
    assert_eq!(w.peers.view().version, version + 2);
}

#[tokio::test]
async fn a_peer_is_down_after_two_failed_probes_and_back_after_one_good_one() {
    let dns = FakeDns::default();
    let probe = FakeProbe::default();
    dns.set(&[A, B, C]);
    let mut w = watch(A, &dns, &probe);
    w.round().await;
    probe.0.lock().unwrap().insert(B.to_string());
    w.round().await;
    assert_eq!(
        w.peers.view().live,
        vec![A, B, C],
        "one failed probe is not enough"
    );
    w.round().await;
    assert_eq!(w.peers.view().live, vec![A, C]);
    probe.0.lock().unwrap().clear();
    w.round().await;
    assert_eq!(w.peers.view().live, vec![A, B, C]);
}

#[tokio::test]
async fn a_peer_never_probed_is_not_live_and_this_kelp_always_is() {
    let dns = FakeDns::default();
    let probe = FakeProbe::default();
    probe.0.lock().unwrap().insert(B.to_string());
    dns.set(&[B]); // the DNS answer does not list this kelp yet
    let mut w = watch(A, &dns, &probe);
    w.round().await;
    assert_eq!(w.peers.view().live, vec![A]);
    assert!(gs_all_mine(&w.peers));
}

fn gs_all_mine(peers: &Peers) -> bool {
    groups().iter().all(|g| peers.owner(g) == Owner::Me)
}

#[test]
fn addresses_are_spelled_one_way() {
    assert_eq!(canonical("10.0.0.7:9094"), "10.0.0.7:9094");
    assert_eq!(
        canonical("fd00::7:9094"),
        "[fd00::7]:9094",
        "$(POD_IP):9094 for an IPv6 pod"
    );
    assert_eq!(canonical("[fd00::7]:9094"), "[fd00::7]:9094");
    assert_eq!(canonical("kelp-0.kelp:9094"), "kelp-0.kelp:9094");
    let mut m = Membership::default();
    m.resolved(
        "[fd00::1]:9094",
        vec!["fd00::1:9094".into(), "[fd00::2]:9094".into()],
    );
    assert_eq!(
        m.addresses(),
        vec!["[fd00::2]:9094"],
        "this kelp is recognised in any spelling"
    );
}

#[tokio::test]
async fn the_dns_resolver_returns_every_address_with_the_port() {
    // `localhost` resolves from /etc/hosts, so this needs no DNS server.
    let addrs = Dns("localhost:9094".into())
        .resolve()
        .await
        .expect("localhost resolves");
    assert!(
        addrs
            .iter()
            .any(|a| a == "127.0.0.1:9094" || a == "[::1]:9094"),
        "{addrs:?}"
    );
    assert!(Dns("no-such-host.invalid:9094".into())
        .resolve()
        .await
        .is_err());
}
