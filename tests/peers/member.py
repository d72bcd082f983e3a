"""A consumer-group member for tests/e2e_peers.rs, run in a child process with the venv's python
so a test can SIGKILL it together with its kelp. confluent-kafka (librdkafka), no auto-commit:
every message is committed synchronously before the next poll (or, with --async-commit, sent
without waiting and reported from librdkafka's commit callback, so the poll loop never blocks on an
unreachable coordinator; with --no-commit, never), and each commit is reported.

  member.py --bootstrap H:P --group G --client-id C --topic T [--set name=value ...]
            [--delay-ms 0] [--max-seconds 300] [--async-commit | --no-commit] [--stamp]

With `--set group.protocol=consumer` (KIP-848) the member leaves session.timeout.ms and
heartbeat.interval.ms to the coordinator (librdkafka refuses them with that protocol); otherwise it
runs with session.timeout.ms=6000 and heartbeat.interval.ms=500 unless --set says otherwise.
With --stamp every line starts with the wall-clock time (`@<unix seconds> `), for tools that
compare members' timelines (benches/rebalance_compare.py).

stdout, one line per event, flushed:
  subscribing             about to subscribe (the member's start, for timing)
  assigned p,p,...        the member's partitions after each assignment or revocation ("-": none)
  lost p,p,...            librdkafka gave these up without a rebalance (its session timed out)
  msg P O                 one consumed message (partition, offset)
  trying P O              a commit of offset O (next to read) for partition P is about to be sent
  acked P O               ... the coordinator answered success
  failed P O TEXT         ... it failed
  error TEXT              a client error (the member keeps going)
  closing                 after SIGTERM: the poll loop ended (nothing is consumed after this)
  closed                  ... closed (LeaveGroup), about to exit 0
Bounded: exits by itself after --max-seconds.
"""
import argparse
import signal
import sys
import time

stopping = False


stamp = False


def out(line):
    if stamp:
        line = f"@{time.time():.6f} {line}"
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def on_term(*_):
    global stopping
    stopping = True


def coerce(v):
    if v in ("true", "false"):
        return v == "true"
    try:
        return int(v)
    except ValueError:
        return v


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--client-id", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--delay-ms", type=float, default=0)
    ap.add_argument("--max-seconds", type=float, default=300)
    ap.add_argument("--async-commit", action="store_true")
    ap.add_argument("--no-commit", action="store_true")
    ap.add_argument("--stamp", action="store_true")
    a = ap.parse_args()
    global stamp
    stamp = a.stamp
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

    conf = {
        "bootstrap.servers": a.bootstrap,
        "group.id": a.group,
        "client.id": a.client_id,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "broker.address.family": "v4",
    }
    for kv in a.set:
        k, v = kv.split("=", 1)
        conf[k] = coerce(v)
    if conf.get("group.protocol") != "consumer":
        conf.setdefault("session.timeout.ms", 6000)
        conf.setdefault("heartbeat.interval.ms", 500)
    # --async-commit: one commit in flight at a time (so commits reach the coordinator in order),
    # the newest offsets of each partition coalesced until it is answered.
    pending = {}
    inflight = [False]

    def on_commit(err, parts):
        inflight[0] = False
        for tp in parts or []:
            if err is not None or tp.error is not None:
                out(f"failed {tp.partition} {tp.offset} {err or tp.error}")
            else:
                out(f"acked {tp.partition} {tp.offset}")

    def send_pending():
        if inflight[0] or not pending:
            return
        tps = [TopicPartition(a.topic, q, o) for q, o in sorted(pending.items())]
        pending.clear()
        for tp in tps:
            out(f"trying {tp.partition} {tp.offset}")
        try:
            c.commit(offsets=tps, asynchronous=True)
            inflight[0] = True
        except KafkaException as e:
            for tp in tps:
                out(f"failed {tp.partition} {tp.offset} {e}")

    if a.async_commit:
        conf["on_commit"] = on_commit
    c = Consumer(conf)
    owned = set()

    def show():
        out("assigned " + (",".join(str(p) for p in sorted(owned)) or "-"))

    def on_assign(consumer, parts):
        owned.update(p.partition for p in parts)
        show()

    def on_revoke(consumer, parts):
        owned.difference_update(p.partition for p in parts)
        show()

    def on_lost(consumer, parts):
        # librdkafka gave the partitions up without a rebalance: its session timed out, or the
        # coordinator no longer knew the member.
        out("lost " + (",".join(str(p.partition) for p in parts) or "-"))
        on_revoke(consumer, parts)

    out("subscribing")
    c.subscribe([a.topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)
    end = time.monotonic() + a.max_seconds
    while not stopping and time.monotonic() < end:
        m = c.poll(0.1)
        if a.async_commit:
            send_pending()
        if m is None:
            continue
        if m.error():
            if m.error().code() != KafkaError._PARTITION_EOF:
                out(f"error {m.error()}")
            continue
        p, o = m.partition(), m.offset() + 1
        out(f"msg {p} {m.offset()}")
        if a.no_commit:
            if a.delay_ms:
                time.sleep(a.delay_ms / 1000.0)
            continue
        if a.async_commit:
            pending[p] = o
            send_pending()
            if a.delay_ms:
                time.sleep(a.delay_ms / 1000.0)
            continue
        out(f"trying {p} {o}")
        try:
            res = c.commit(message=m, asynchronous=False)
            bad = [tp for tp in (res or []) if tp.error is not None]
            if bad:
                out(f"failed {p} {o} {bad[0].error}")
            else:
                out(f"acked {p} {o}")
        except KafkaException as e:
            out(f"failed {p} {o} {e}")
        if a.delay_ms:
            time.sleep(a.delay_ms / 1000.0)
    out("closing")
    c.close()
    out("closed")


if __name__ == "__main__":
    main()
