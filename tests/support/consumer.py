"""A consumer-group member for kelp's integration tests, run in a child process by
tests/support/mod.rs (PyConsumer) with the venv's python, so a test can SIGKILL it for real.

  consumer.py --client confluent|kafka-python --bootstrap H:P --group G --client-id C
              --topic T [--topic T2 ...] [--set name=value ...] [--max-seconds 1800]

stdout, one line per event, flushed:
  assigned topic:p,topic:p     the member's assignment after each rebalance ("assigned -": none)
  msg topic p offset HEX       one consumed message (payload as hex)
  error TEXT                   a client error (the member keeps going)
  closed                       after SIGTERM: committed, closed (LeaveGroup), about to exit 0
Auto-commit every second by default. With `--set group.protocol=consumer` (KIP-848) the session
timeout and heartbeat interval are left to the coordinator. Bounded: exits by itself after --max-seconds.
"""
import argparse
import signal
import sys
import time

stopping = False


def out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def on_term(*_):
    global stopping
    stopping = True


def fmt(parts):
    return ",".join(f"{t}:{p}" for t, p in sorted(parts)) or "-"


def coerce(v):
    if v in ("true", "false"):
        return v == "true"
    try:
        return int(v)
    except ValueError:
        return v


def run_confluent(a, extra):
    from confluent_kafka import Consumer, KafkaError

    conf = {
        "bootstrap.servers": a.bootstrap,
        "group.id": a.group,
        "client.id": a.client_id,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": True,
        "auto.commit.interval.ms": 1000,
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 1000,
        "broker.address.family": "v4",
    }
    conf.update(extra)
    if conf.get("group.protocol") == "consumer":
        # KIP-848: the coordinator sets these; librdkafka refuses them with that protocol.
        conf.pop("session.timeout.ms")
        conf.pop("heartbeat.interval.ms")
    c = Consumer(conf)
    owned = set()

    def on_assign(consumer, parts):
        owned.update((p.topic, p.partition) for p in parts)
        out("assigned " + fmt(owned))

    def on_revoke(consumer, parts):
        owned.difference_update((p.topic, p.partition) for p in parts)
        out("assigned " + fmt(owned))

    c.subscribe(a.topic, on_assign=on_assign, on_revoke=on_revoke, on_lost=on_revoke)
    end = time.monotonic() + a.max_seconds
    while not stopping and time.monotonic() < end:
        m = c.poll(0.2)
        if m is None:
            continue
        if m.error():
            if m.error().code() != KafkaError._PARTITION_EOF:
                out(f"error {m.error()}")
            continue
        out(f"msg {m.topic()} {m.partition()} {m.offset()} {(m.value() or b'').hex()}")
    try:
        c.commit(asynchronous=False)
    except Exception as e:  # nothing consumed yet: "no offset"
        out(f"error final commit: {e}")
    c.close()
    out("closed")


def run_kafka_python(a, extra):
    from kafka import KafkaConsumer, ConsumerRebalanceListener

    owned = set()

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            owned.difference_update((p.topic, p.partition) for p in revoked)
            out("assigned " + fmt(owned))

        def on_partitions_assigned(self, assigned):
            owned.update((p.topic, p.partition) for p in assigned)
            out("assigned " + fmt(owned))

    kw = dict(
        bootstrap_servers=a.bootstrap,
        group_id=a.group,
        client_id=a.client_id,
        auto_offset_reset="earliest",
        enable_auto_commit=True,
        auto_commit_interval_ms=1000,
        session_timeout_ms=10000,
        heartbeat_interval_ms=1000,
    )
    kw.update(extra)
    c = KafkaConsumer(**kw)
    c.subscribe(topics=a.topic, listener=Listener())
    end = time.monotonic() + a.max_seconds
    while not stopping and time.monotonic() < end:
        try:
            batches = c.poll(timeout_ms=200)
        except Exception as e:
            out(f"error {e}")
            time.sleep(0.2)
            continue
        for tp, msgs in batches.items():
            for m in msgs:
                out(f"msg {m.topic} {m.partition} {m.offset} {(m.value or b'').hex()}")
    try:
        c.commit()
    except Exception as e:
        out(f"error final commit: {e}")
    c.close(autocommit=False)
    out("closed")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--client", choices=["confluent", "kafka-python"], required=True)
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--client-id", required=True)
    ap.add_argument("--topic", action="append", required=True)
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--max-seconds", type=float, default=1800)
    a = ap.parse_args()
    extra = {}
    for kv in a.set:
        k, v = kv.split("=", 1)
        extra[k] = coerce(v)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    if a.client == "confluent":
        run_confluent(a, extra)
    else:
        run_kafka_python(a, extra)


if __name__ == "__main__":
    main()
