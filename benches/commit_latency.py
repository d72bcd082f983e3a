#!/usr/bin/env python3
"""Synchronous OffsetCommit latency: through kelp with the filer store, through kelp in memory, and
directly to the SeaweedFS gateway, in one run (alternating rounds).

Run by scripts/bench-commit, which starts the stack (gateway on 127.0.0.1:9093: it always
advertises 9093, so a direct client only works there) and two release kelps. Each target gets a
fresh 1-partition topic and a group whose one confluent-kafka member has joined (the gateway stores
a commit only for a live group), then commits increasing offsets one at a time with
`commit(asynchronous=False)`, timing each call. The last offset is read back to prove it was stored.
"""
import argparse
import statistics
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def member(bootstrap, topic, group):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for _, fut in admin.create_topics([NewTopic(topic, 1, 1)]).items():
        fut.result(30)
    p = Producer({"bootstrap.servers": bootstrap})
    p.produce(topic, value=b"x")
    if p.flush(30):
        raise SystemExit(f"{bootstrap}: produce failed")
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                  "auto.offset.reset": "earliest", "broker.address.family": "v4"})
    c.subscribe([topic])
    deadline = time.time() + 60
    while time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            return c
    raise SystemExit(f"{bootstrap}: the member got no message within 60 s")


def commits(c, topic, start, n):
    lat = []
    for i in range(start, start + n):
        t = time.perf_counter()
        c.commit(offsets=[TopicPartition(topic, 0, i)], asynchronous=False)
        lat.append((time.perf_counter() - t) * 1000)
    return lat


def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(q / 100 * (len(v) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", action="append", required=True, help="name=host:port")
    ap.add_argument("--commits", type=int, default=500, help="per round and target")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=50)
    a = ap.parse_args()
    stamp = int(time.time())
    targets = [t.split("=", 1) for t in a.target]
    members = {}
    for name, bootstrap in targets:
        topic, group = f"commit-bench-{name}-{stamp}", f"g-commit-bench-{name}-{stamp}"
        c = member(bootstrap, topic, group)
        commits(c, topic, 1, a.warmup)
        members[name] = (c, topic, a.warmup + 1)
    lat = {name: [] for name, _ in targets}
    for r in range(a.rounds):
        for name, _ in targets:
            c, topic, nxt = members[name]
            lat[name] += commits(c, topic, nxt, a.commits)
            members[name] = (c, topic, nxt + a.commits)
            print(f"round {r} {name}: median {statistics.median(lat[name][-a.commits:]):.2f} ms",
                  file=sys.stderr)
    print("| target | commits | p50 ms | p99 ms | mean ms | max ms |")
    print("|---|---|---|---|---|---|")
    for name, _ in targets:
        v = lat[name]
        c, topic, nxt = members[name]
        back = c.committed([TopicPartition(topic, 0)], timeout=30)[0].offset
        if back != nxt - 1:
            raise SystemExit(f"{name}: committed {nxt - 1}, read back {back}")
        print(f"| {name} | {len(v)} | {pct(v, 50):.2f} | {pct(v, 99):.2f} | "
              f"{statistics.mean(v):.2f} | {max(v):.2f} |")
        c.close()
    print(f"\nworkload: synchronous commits of one partition by a joined member, {a.rounds} "
          f"alternating rounds x {a.commits} per target after {a.warmup} warm-up commits")


if __name__ == "__main__":
    main()
