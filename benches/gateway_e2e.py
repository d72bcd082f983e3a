#!/usr/bin/env python3
"""Produce and consume throughput through kelp vs directly to the SeaweedFS gateway, in one run.

Run by scripts/bench-gateway (which builds kelp in release mode and passes the paths). The gateway
listens on 127.0.0.1:9093 because it always advertises that port (BACKEND.md), so a direct client
only works there. Each round alternates direct and kelp on fresh topics; the table reports medians
and the ratio kelp/direct, plus kelp's RSS idle and its peak under the load.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic


def rss_kib(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def create(bootstrap, topic, partitions):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for _, fut in admin.create_topics([NewTopic(topic, partitions, 1)]).items():
        fut.result(30)


def produce(bootstrap, topic, n, size):
    payload = b"x" * size
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all",
                  "queue.buffering.max.messages": 1000000})
    errors = []
    start = time.perf_counter()
    for i in range(n):
        while True:
            try:
                p.produce(topic, value=payload, key=str(i).encode(),
                          on_delivery=lambda e, m: e and errors.append(e))
                break
            except BufferError:
                p.poll(0.01)
    left = p.flush(120)
    elapsed = time.perf_counter() - start
    if left or errors:
        raise SystemExit(f"produce failed: {left} unflushed, {len(errors)} errors")
    return elapsed


def consume(bootstrap, topic, n, group):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    got = 0
    start = None
    deadline = time.time() + 180
    while got < n and time.time() < deadline:
        for m in c.consume(10000, 1.0):
            if m.error():
                continue
            if start is None:
                start = time.perf_counter()
            got += 1
    elapsed = time.perf_counter() - (start or time.perf_counter())
    c.close()
    if got < n:
        raise SystemExit(f"consumed {got}/{n}")
    return elapsed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--direct", required=True)
    ap.add_argument("--kelp", required=True)
    ap.add_argument("--kelp-pid", type=int, required=True)
    ap.add_argument("--messages", type=int, default=50000)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    idle = rss_kib(a.kelp_pid)
    results = {"direct": {"produce": [], "consume": []}, "kelp": {"produce": [], "consume": []}}
    for r in range(a.rounds):
        for name, bootstrap in (("direct", a.direct), ("kelp", a.kelp)):
            topic = f"bench-{name}-{r}-{int(time.time())}"
            create(bootstrap, topic, 3)
            results[name]["produce"].append(produce(bootstrap, topic, a.messages, a.size))
            results[name]["consume"].append(consume(bootstrap, topic, a.messages, f"g-{topic}"))
            print(f"round {r} {name}: produce {results[name]['produce'][-1]:.2f}s "
                  f"consume {results[name]['consume'][-1]:.2f}s", file=sys.stderr)
    peak = rss_kib(a.kelp_pid, "VmHWM")
    mb = a.messages * a.size / 1e6
    rows = []
    for op in ("produce", "consume"):
        d = statistics.median(results["direct"][op])
        k = statistics.median(results["kelp"][op])
        rows.append((op, mb / d, a.messages / d, mb / k, a.messages / k, d / k))
    print(f"| op | direct MB/s | direct msg/s | kelp MB/s | kelp msg/s | kelp/direct |")
    print(f"|---|---|---|---|---|---|")
    for op, dm, dn, km, kn, ratio in rows:
        print(f"| {op} | {dm:.1f} | {dn:.0f} | {km:.1f} | {kn:.0f} | {ratio:.3f} |")
    print(f"\nkelp RSS idle: {idle / 1024:.1f} MiB; peak (VmHWM) under load: {peak / 1024:.1f} MiB")
    print(f"workload: {a.messages} messages x {a.size} B, 3 partitions, acks=all, linger.ms=5, "
          f"median of {a.rounds} alternating rounds")


if __name__ == "__main__":
    main()
