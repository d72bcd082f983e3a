#!/usr/bin/env python3
"""Rebalance latency of a 3-member consumer group (librdkafka via confluent-kafka), kelp's
coordinator vs the gateway's, in one run.

Two kelps front the same gateway: one `--group-mode local --group-initial-rebalance-delay-ms 0`,
one `--group-mode passthrough` (group requests go to the gateway's coordinator). For each round and
each kelp, a fresh group on a 6-partition topic: two members join and settle, then a third
subscribes; the latency is from the third member's subscribe until all three hold assignments
that cover the 6 partitions exactly once. Run by scripts/bench-rebalance.
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
    assigned = {}
    members = []
    for name in ("a", "b", "c"):
        c, on_assign, on_revoke = consumer(bootstrap, group, assigned, name)
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
    ap.add_argument("--passthrough", required=True, help="kelp passing groups to the gateway")
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
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


if __name__ == "__main__":
    main()
