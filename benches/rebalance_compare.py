#!/usr/bin/env python3
"""Six members consume a 12-partition topic that is produced to continuously; a seventh joins.
The same run, one kelp, side by side: classic eager (`partition.assignment.strategy=range`), classic
`cooperative-sticky`, and KIP-848 (`group.protocol=consumer`, kelp assigns). Run by
scripts/compare-rebalance; it measures, it asserts nothing.

Each member is tests/peers/member.py in a child process (confluent-kafka / librdkafka), printing
every assignment change, revocation and consumed message stamped with its own wall clock
(`--stamp`). Per mode, from those stamps:

- *7th: subscribe -> first message*: from the seventh member's subscribe to its first message;
- *consumer-seconds paused*: summed over the six original members, the time each was without
  some partition it owned before the seventh joined and still owns at the end (eager revokes
  everything, so there every member pauses from its revocation to its new assignment, also for
  partitions it gets back);
- *members paused*: how many of the six paused at all;
- *settled after*: from the subscribe to the last assignment change of any member;
- *longest gap on a kept partition*: the longest stretch between two consumed messages of one
  member on one partition it kept, around the join (a partition gets a message every
  partitions/rate s, 50 ms at the defaults, so that is the baseline).

Each value is the median over --rounds rounds per protocol (protocols interleaved), each round a
fresh group whose seventh member joins at a random point of the six's heartbeat cycle.

Classic members run with session.timeout.ms and heartbeat.interval.ms from --session-ms and
--heartbeat-ms; the KIP-848 members get the same values from kelp (scripts/compare-rebalance
starts kelp with --group-consumer-session-timeout-ms / --group-consumer-heartbeat-interval-ms),
since librdkafka refuses them client-side with that protocol.
"""
import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

HERE = os.path.dirname(os.path.abspath(__file__))
MEMBER = os.path.join(HERE, "..", "tests", "peers", "member.py")

MODES = {
    "eager": ("classic eager (`range`)", [("partition.assignment.strategy", "range")]),
    "cooperative": ("classic `cooperative-sticky`", [("partition.assignment.strategy", "cooperative-sticky")]),
    "consumer": ("KIP-848 (`group.protocol=consumer`)", [("group.protocol", "consumer")]),
}


class Member:
    """One member.py child and what it printed."""

    def __init__(self, bootstrap, group, name, topic, settings, log_dir):
        self.name = name
        self.timeline = []  # (t, sorted partitions)
        self.msgs = []  # (t, partition)
        self.subscribed = None
        self.lock = threading.Lock()
        args = [sys.executable, MEMBER, "--bootstrap", bootstrap, "--group", group, "--client-id", name,
                "--topic", topic, "--stamp", "--async-commit", "--max-seconds", "600"]
        for k, v in settings:
            args += ["--set", f"{k}={v}"]
        self.err = open(os.path.join(log_dir, f"{group}-{name}.log"), "w")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.err, text=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            if not line.startswith("@"):
                continue
            stamp, _, rest = line.strip().partition(" ")
            t = float(stamp[1:])
            f = rest.split(" ")
            with self.lock:
                if f[0] == "assigned":
                    parts = sorted(int(p) for p in f[1].split(",") if p not in ("", "-")) if len(f) > 1 else []
                    self.timeline.append((t, parts))
                elif f[0] == "msg":
                    self.msgs.append((t, int(f[1])))
                elif f[0] == "subscribing":
                    self.subscribed = t

    def owned(self):
        with self.lock:
            return self.timeline[-1][1] if self.timeline else []

    def owned_at(self, t):
        with self.lock:
            cur = []
            for at, parts in self.timeline:
                if at > t:
                    break
                cur = parts
            return cur

    def last_change(self):
        with self.lock:
            return self.timeline[-1][0] if self.timeline else None

    def first_msg(self):
        with self.lock:
            return self.msgs[0][0] if self.msgs else None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout):
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.err.close()


def exact_cover(members, partitions):
    owned = [p for m in members for p in m.owned()]
    return sorted(owned) == list(range(partitions)) and all(m.owned() for m in members)


def wait_settled(members, partitions, quiet, timeout, need_msgs=()):
    """Until the members cover the partitions exactly, each of `need_msgs` consumed something, and
    no assignment changed for `quiet` seconds. Returns the wall time then, or None on timeout."""
    end = time.time() + timeout
    while time.time() < end:
        if exact_cover(members, partitions) and all(m.first_msg() for m in need_msgs):
            last = max(m.last_change() or 0 for m in members)
            if time.time() - last >= quiet:
                return time.time()
        time.sleep(0.1)
    return None


def kept_and_paused(m, frm, to):
    kept = [p for p in m.owned_at(frm) if p in m.owned_at(to)]
    if not kept:
        return kept, 0.0
    paused, since = 0.0, None
    with m.lock:
        changes = [(t, a) for t, a in m.timeline if frm < t <= to]
    for t, a in changes:
        whole = all(p in a for p in kept)
        if not whole and since is None:
            since = t
        elif whole and since is not None:
            paused += t - since
            since = None
    if since is not None:
        paused += to - since
    return kept, paused


def longest_gap(m, kept, frm, to):
    worst = 0.0
    with m.lock:
        msgs = list(m.msgs)
    for p in kept:
        ts = [frm] + [t for t, q in msgs if q == p and frm <= t <= to]
        worst = max(worst, max((b - a for a, b in zip(ts, ts[1:])), default=0.0))
    return worst


def producer_loop(bootstrap, topic, partitions, rate, stop):
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "broker.address.family": "v4"})
    i, start = 0, time.time()
    while not stop.is_set():
        try:
            p.produce(topic, value=f"m{i}".encode(), partition=i % partitions)
            i += 1
        except BufferError:
            p.poll(0.05)
            continue
        p.poll(0)
        behind = start + i / rate - time.time()
        if behind > 0:
            time.sleep(behind)
    p.flush(10)


def run_mode(a, mode, topic, log_dir):
    label, settings = MODES[mode]
    settings = list(settings)
    if mode != "consumer":
        settings += [("session.timeout.ms", a.session_ms), ("heartbeat.interval.ms", a.heartbeat_ms)]
    settings += [("auto.offset.reset", "latest")]
    group = f"compare-{mode}-{time.time():.0f}-{random.randrange(1 << 30)}"
    members = [Member(a.bootstrap, group, f"m{i}", topic, settings, log_dir) for i in range(6)]
    try:
        if wait_settled(members, a.partitions, 3, a.timeout, need_msgs=members) is None:
            return label, None, f"six members not settled within {a.timeout} s"
        # The seventh joins at a random point of the six's heartbeat cycle (they heartbeat in phase
        # since their own join), so no protocol is favoured by where that point falls.
        time.sleep(2 + random.uniform(0, a.heartbeat_ms / 1000.0))
        seventh = Member(a.bootstrap, group, "m6", topic, settings, log_dir)
        members.append(seventh)
        done = wait_settled(members, a.partitions, a.quiet, a.timeout, need_msgs=[seventh])
        if done is None:
            return label, None, f"seven members not settled within {a.timeout} s: " + \
                ", ".join(f"{m.name} {m.owned()}" for m in members)
        t7 = seventh.subscribed
        first = seventh.first_msg() - t7
        paused, n_paused, gaps = 0.0, 0, 0.0
        for m in members[:6]:
            kept, p = kept_and_paused(m, t7, done)
            paused += p
            n_paused += p > 0
            gaps = max(gaps, longest_gap(m, kept, t7 - 1, done))
        settled = max(m.last_change() for m in members) - t7
        return label, (first, paused, n_paused, settled, gaps), None
    finally:
        for m in members:
            m.stop()
        for m in members:
            m.wait(30)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True, help="kelp")
    ap.add_argument("--modes", default="eager,cooperative,consumer")
    ap.add_argument("--partitions", type=int, default=12)
    ap.add_argument("--rate", type=float, default=240, help="messages/s over all partitions")
    ap.add_argument("--heartbeat-ms", type=int, default=3000)
    ap.add_argument("--session-ms", type=int, default=45000)
    ap.add_argument("--quiet", type=float, default=5, help="s without an assignment change = settled")
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--rounds", type=int, default=3, help="rounds per protocol (medians reported)")
    ap.add_argument("--out", help="also write the table here")
    ap.add_argument("--log-dir", default=".")
    a = ap.parse_args()
    topic = f"compare-rebalance-{int(time.time())}"
    admin = AdminClient({"bootstrap.servers": a.bootstrap, "broker.address.family": "v4"})
    for _, f in admin.create_topics([NewTopic(topic, a.partitions, 1)]).items():
        f.result(30)
    time.sleep(1)
    stop = threading.Event()
    prod = threading.Thread(target=producer_loop, args=(a.bootstrap, topic, a.partitions, a.rate, stop))
    prod.start()
    modes = a.modes.split(",")
    results = {m: [] for m in modes}
    failures = {m: [] for m in modes}
    try:
        for r in range(a.rounds):
            for mode in modes:
                _, got, why = run_mode(a, mode, topic, a.log_dir)
                print(f"round {r} {mode}: {got if got else why}", file=sys.stderr)
                if got:
                    results[mode].append(got)
                else:
                    failures[mode].append(why)
    finally:
        stop.set()
        prod.join()
    rows = []
    for mode in modes:
        got = results[mode]
        med = tuple(statistics.median(v[i] for v in got) for i in range(5)) if got else None
        spread = (min(v[0] for v in got), max(v[0] for v in got)) if got else None
        rows.append((MODES[mode][0], med, spread, len(got), failures[mode]))
    lines = [
        f"6 -> 7 members on one {a.partitions}-partition topic, {a.rate:.0f} msg/s produced throughout; "
        f"heartbeat interval {a.heartbeat_ms} ms, session timeout {a.session_ms} ms (classic: client "
        f"settings; KIP-848: kelp's); medians of {a.rounds} rounds per protocol, the seventh joining at a "
        f"random point of the heartbeat cycle",
        "",
        "| protocol | 7th member: subscribe -> first message, s (min-max) | consumer-seconds paused (6 members) "
        "| members paused | last assignment change after, s | longest gap on a kept partition, s |",
        "|---|---|---|---|---|---|",
    ]
    for label, r, spread, n, failed in rows:
        if r is None:
            lines.append(f"| {label} | not measured: {failed[:1]} | | | | |")
            continue
        first, paused, n_paused, settled, gap = r
        note = f"; {len(failed)} of {a.rounds} rounds failed" if failed else ""
        lines.append(f"| {label} | {first:.2f} ({spread[0]:.2f}-{spread[1]:.2f}){note} | {paused:.2f} "
                     f"| {n_paused:.0f} of 6 | {settled:.2f} | {gap:.2f} |")
    table = "\n".join(lines)
    print(table)
    if a.out:
        with open(a.out, "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()
