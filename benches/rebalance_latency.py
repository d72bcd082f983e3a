#!/usr/bin/env python3
"""Rebalance latency of a 3-member consumer group (librdkafka via confluent-kafka), kelp's
coordinator vs the gateway's, in one run.

Two kelps front the same gateway: one `--group-mode local --group-initial-rebalance-delay-ms 0`,
one `--group-mode passthrough` (group requests go to the gateway's coordinator). For each round and
each kelp, a fresh group on a 6-partition topic: two members join and settle, then a third
subscribes; the latency is from the third member's subscribe until all three hold assignments
that cover the 6 partitions exactly once. Run by scripts/bench-rebalance.

With `--mesh A,B,C` instead of `--passthrough`, the same group once on a single kelp (`--local`) and
once spread over three kelps that share it (member a on A, b on B, c on C: two of them forwarded to
the group's owner). Run by scripts/bench-peers.
"""
import argparse
import statistics
import sys
import time

from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic


def consumer(bootstrap, group, assigned, name):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "client.id": "bench",
                  "session.timeout.ms": 6000, "heartbeat.interval.ms": 100,
                  "auto.offset.reset": "latest", "enable.auto.commit": False})

    def on_assign(_c, parts):
        assigned[name] = sorted(p.partition for p in parts)

    def on_revoke(_c, _parts):
        assigned[name] = []

    return c, on_assign, on_revoke


def covered(assigned, names, partitions):
    parts = [p for n in names for p in assigned.get(n, [])]
    return sorted(parts) == list(range(partitions)) and all(assigned.get(n) for n in names)


def one_round(bootstrap, topic, group, partitions, timeout=30.0):
    """`bootstrap`: one address for all three members, or a list of three (one each)."""
    assigned = {}
    members = []
    boots = bootstrap if isinstance(bootstrap, list) else [bootstrap] * 3
    for name, boot in zip(("a", "b", "c"), boots):
        c, on_assign, on_revoke = consumer(boot, group, assigned, name)
        members.append((name, c, on_assign, on_revoke))

    def poll_until(names, started):
        while time.perf_counter() - started < timeout:
            for n, c, _, _ in members:
                if n in names:
                    c.poll(0.005)
            if covered(assigned, names, partitions):
                return time.perf_counter() - started
        print(f"{group}: no exact assignment for {sorted(names)} within {timeout}s: {assigned}", file=sys.stderr)
        return None

    for n, c, on_assign, on_revoke in members[:2]:
        c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
    if poll_until({"a", "b"}, time.perf_counter()) is None:
        for _, c, _, _ in members:
            c.close()
        return None
    n, c, on_assign, on_revoke = members[2]
    started = time.perf_counter()
    c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
    took = poll_until({"a", "b", "c"}, started)
    for _, c, _, _ in members:
        c.close()
    return took


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--local", required=True, help="kelp with the local coordinator")
    ap.add_argument("--passthrough", help="kelp passing groups to the gateway")
    ap.add_argument("--mesh", help="three kelps sharing groups (comma-separated), one per member")
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    if a.mesh:
        return mesh(a)
    topic = f"rebalance-bench-{int(time.time())}"
    admin = AdminClient({"bootstrap.servers": a.local})
    for _, f in admin.create_topics([NewTopic(topic, 6, 1)]).items():
        f.result(30)
    results = {"local": [], "passthrough": []}
    failed = {"local": 0, "passthrough": 0}
    for r in range(a.rounds):
        for mode, bootstrap in (("local", a.local), ("passthrough", a.passthrough)):
            took = one_round(bootstrap, topic, f"rb-{mode}-{r}-{int(time.time())}", 6)
            if took is None:
                failed[mode] += 1
                continue
            results[mode].append(took)
            print(f"round {r} {mode}: {took * 1000:.0f} ms", file=sys.stderr)
    print("| coordinator | median ms | min ms | max ms | rounds without an exact assignment in 30 s |")
    print("|---|---|---|---|---|")
    for mode in ("local", "passthrough"):
        v = results[mode] or [float("nan")]
        label = "kelp (local, initial delay 0)" if mode == "local" else "gateway (kelp passthrough)"
        print(f"| {label} | {statistics.median(v) * 1000:.0f} | {min(v) * 1000:.0f} | {max(v) * 1000:.0f} "
              f"| {failed[mode]} of {a.rounds} |")
    loc = statistics.median(results["local"] or [float("nan")])
    gw = statistics.median(results["passthrough"] or [float("nan")])
    print(f"\nratio gateway/kelp (medians of settled rounds): {gw / loc:.2f} ({a.rounds} rounds; a third member joins a stable 2-member "
          f"group; until all 3 hold a 6-partition assignment; heartbeat.interval.ms=100)")


def mesh(a):
    kelps = a.mesh.split(",")
    assert len(kelps) == 3, "--mesh takes three kelps"
    topic = f"rebalance-bench-mesh-{int(time.time())}"
    admin = AdminClient({"bootstrap.servers": a.local})
    for _, f in admin.create_topics([NewTopic(topic, 6, 1)]).items():
        f.result(30)
    modes = (("single", a.local), ("mesh", kelps))
    results = {m: [] for m, _ in modes}
    failed = {m: 0 for m, _ in modes}
    for r in range(a.rounds):
        for mode, bootstrap in modes:
            took = one_round(bootstrap, topic, f"rb-{mode}-{r}-{int(time.time())}", 6)
            if took is None:
                failed[mode] += 1
                continue
            results[mode].append(took)
            print(f"round {r} {mode}: {took * 1000:.0f} ms", file=sys.stderr)
    print("| group | median ms | min ms | max ms | rounds without an exact assignment in 30 s |")
    print("|---|---|---|---|---|")
    labels = {"single": "3 members on one kelp", "mesh": "3 members on 3 kelps (one owner)"}
    for mode, _ in modes:
        v = results[mode] or [float("nan")]
        print(f"| {labels[mode]} | {statistics.median(v) * 1000:.0f} | {min(v) * 1000:.0f} | {max(v) * 1000:.0f} "
              f"| {failed[mode]} of {a.rounds} |")
    single = statistics.median(results["single"] or [float("nan")])
    spread = statistics.median(results["mesh"] or [float("nan")])
    print(f"\nratio 3 kelps / 1 kelp (medians): {spread / single:.2f} ({a.rounds} rounds; a third member joins a "
          f"stable 2-member group; until all 3 hold a 6-partition assignment; heartbeat.interval.ms=100)")


if __name__ == "__main__":
    main()
