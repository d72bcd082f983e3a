"""The cost of kelp's consumer-lag task (issue 17): GROUPS groups committing on TOPICS topics (group g
commits partition 0 of topic g % TOPICS), then for SECONDS at the lag interval each kelp was started
with: ListOffsets requests/s kelp sent to the gateway (kelp_lag_list_offsets_requests_total), rounds,
topic sets, mean round time, and kelp's CPU (utime+stime from /proc) as a share of one core.
Run by scripts/bench-lag, which starts the stack and the kelps; never on its own.

  lag_poll.py --kelp NAME=HOST:PORT,METRICS_HOST:PORT,PID [--kelp ...] [--groups 1000]
              [--topics 100] [--seconds 120]
"""
import argparse
import os
import time
import urllib.request

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

TICK = os.sysconf("SC_CLK_TCK")


def metrics(addr):
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=10) as r:
        return r.read().decode()


def value(text, name, labels=""):
    prefix = name + (("{" + labels + "}") if labels else "") + " "
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def sample(k):
    text = metrics(k["metrics"])
    return {
        "t": time.monotonic(),
        "cpu": cpu_seconds(k["pid"]),
        "requests": value(text, "kelp_lag_list_offsets_requests_total", 'result="ok"')
        + value(text, "kelp_lag_list_offsets_requests_total", 'result="error"'),
        "errors": value(text, "kelp_lag_list_offsets_requests_total", 'result="error"'),
        "rounds": value(text, "kelp_lag_rounds_total"),
        "sets": value(text, "kelp_lag_topic_sets"),
        "round_sum": value(text, "kelp_lag_round_duration_seconds_sum"),
        "round_count": value(text, "kelp_lag_round_duration_seconds_count"),
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--kelp", action="append", required=True)
    p.add_argument("--groups", type=int, default=1000)
    p.add_argument("--topics", type=int, default=100)
    p.add_argument("--seconds", type=float, default=120)
    a = p.parse_args()
    kelps = []
    for spec in a.kelp:
        name, rest = spec.split("=", 1)
        addr, maddr, pid = rest.split(",")
        kelps.append({"name": name, "addr": addr, "metrics": maddr, "pid": int(pid)})
    first = kelps[0]["addr"]
    tag = os.getpid()
    topics = [f"bench-lag-{tag}-{i}" for i in range(a.topics)]
    admin = AdminClient({"bootstrap.servers": first, "broker.address.family": "v4"})
    created = time.monotonic()
    # One at a time, as tests/support does (the gateway's CreateTopics answer to a long operation
    # timeout does not parse), each retried a few times.
    for t in topics:
        for attempt in range(5):
            try:
                admin.create_topics([NewTopic(t, 1, 1)], operation_timeout=20,
                                    request_timeout=30)[t].result(timeout=60)
                break
            except Exception as e:  # noqa: BLE001 - already created by an earlier attempt is fine
                if "TOPIC_ALREADY_EXISTS" in str(e) or "already exists" in str(e):
                    break
                if attempt == 4:
                    raise
                time.sleep(1)
    print(f"setup: {a.topics} topics created in {time.monotonic() - created:.0f} s", flush=True)
    producer = Producer({"bootstrap.servers": first, "broker.address.family": "v4", "linger.ms": 5})
    deadline = time.monotonic() + 300
    for t in topics:
        for i in range(10):
            while True:
                try:
                    producer.produce(t, value=b"x" * 64)
                    break
                except BufferError:
                    producer.poll(0.05)
                    if time.monotonic() > deadline:
                        raise SystemExit("produce did not finish within 300 s")
    producer.flush(120)
    started = time.monotonic()
    for k in kelps:
        for g in range(a.groups):
            c = Consumer({"bootstrap.servers": k["addr"], "broker.address.family": "v4",
                          "group.id": f"bench-lag-{tag}-g{g}", "enable.auto.commit": False})
            c.commit(offsets=[TopicPartition(topics[g % a.topics], 0, g % 7)], asynchronous=False)
            c.close()
    print(f"setup: {a.groups} groups committed on each of {len(kelps)} kelp(s) "
          f"in {time.monotonic() - started:.0f} s", flush=True)
    # Wait (bounded) until the first kelp's last round saw every topic set (the others may run
    # rounds rarely: they are the baselines).
    for k in kelps[:1]:
        limit = time.monotonic() + 300
        while sample(k)["sets"] < a.topics and time.monotonic() < limit:
            time.sleep(1)
    before = [sample(k) for k in kelps]
    time.sleep(a.seconds)
    after = [sample(k) for k in kelps]
    print(f"{'kelp':<22} {'wall s':>7} {'rounds':>6} {'topic sets':>10} {'ListOffsets':>11} "
          f"{'req/s':>7} {'errors':>6} {'round ms':>8} {'CPU % of a core':>15}")
    for k, b, e in zip(kelps, before, after):
        wall = e["t"] - b["t"]
        rounds = e["rounds"] - b["rounds"]
        reqs = e["requests"] - b["requests"]
        count = e["round_count"] - b["round_count"]
        round_ms = 1000 * (e["round_sum"] - b["round_sum"]) / count if count else float("nan")
        cpu = 100 * (e["cpu"] - b["cpu"]) / wall
        print(f"{k['name']:<22} {wall:>7.1f} {rounds:>6.0f} {e['sets']:>10.0f} {reqs:>11.0f} "
              f"{reqs / wall:>7.2f} {e['errors'] - b['errors']:>6.0f} {round_ms:>8.1f} {cpu:>15.2f}")


if __name__ == "__main__":
    main()
