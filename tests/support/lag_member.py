"""A consumer-group member for kelp's lag tests (tests/lag.rs), driven by commands on stdin, and the
client side of the lag comparison: lag = high watermark - committed offset, from confluent-kafka's
get_watermark_offsets and committed, as a user of the client would compute it.

  lag_member.py --bootstrap H:P --group G --topic T [--set name=value ...] [--max-seconds 600]

stdin, one command a line (each answered "ok CMD" once applied):
  pause       pause every assigned partition (the member keeps polling, so it stays in the group)
  nocommit    consume (resume) but commit nothing
  commit      consume and commit what was consumed (the start mode)
  lag         answer "lag TOTAL MAX t:p=high-committed,...": partitions with a commit only
  exit        close (LeaveGroup, no commit), answer "closed" and exit 0
stdout also: "assigned t:p,..." after each rebalance, "error TEXT" on client errors.
Bounded: exits by itself after --max-seconds.
"""
import argparse
import queue
import sys
import threading
import time

from confluent_kafka import Consumer, KafkaError, TopicPartition


def out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def coerce(v):
    if v in ("true", "false"):
        return v == "true"
    try:
        return int(v)
    except ValueError:
        return v


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--group", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--max-seconds", type=float, default=600)
    a = p.parse_args()
    conf = {
        "bootstrap.servers": a.bootstrap,
        "group.id": a.group,
        "client.id": "lag-member",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 1000,
        "broker.address.family": "v4",
    }
    for kv in a.set:
        k, v = kv.split("=", 1)
        conf[k] = coerce(v)
    c = Consumer(conf)
    owned = set()

    def on_assign(consumer, parts):
        owned.update((p.topic, p.partition) for p in parts)
        out("assigned " + ",".join(f"{t}:{p}" for t, p in sorted(owned)))

    def on_revoke(consumer, parts):
        owned.difference_update((p.topic, p.partition) for p in parts)

    c.subscribe([a.topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_revoke)

    commands = queue.Queue()

    def read_stdin():
        for line in sys.stdin:
            commands.put(line.strip())
        commands.put("exit")

    threading.Thread(target=read_stdin, daemon=True).start()
    mode = "commit"
    paused = False
    dirty = False
    last_commit = 0.0
    end = time.monotonic() + a.max_seconds
    while time.monotonic() < end:
        while True:
            try:
                cmd = commands.get_nowait()
            except queue.Empty:
                break
            parts = [TopicPartition(t, p) for t, p in sorted(owned)]
            if cmd == "pause":
                c.pause(parts)
                paused = True
                mode = "pause"
            elif cmd in ("nocommit", "commit"):
                if paused:
                    c.resume(parts)
                    paused = False
                mode = cmd
            elif cmd == "lag":
                total, worst, shown = 0, 0, []
                committed = c.committed(parts, timeout=10)
                for tp in committed:
                    if tp.offset < 0:
                        continue
                    _, high = c.get_watermark_offsets(
                        TopicPartition(tp.topic, tp.partition), timeout=10, cached=False
                    )
                    lag = max(0, high - tp.offset)
                    total += lag
                    worst = max(worst, lag)
                    shown.append(f"{tp.topic}:{tp.partition}={high}-{tp.offset}")
                out(f"lag {total} {worst} {','.join(shown) or '-'}")
                continue
            elif cmd == "exit":
                c.close()
                out("closed")
                return
            out("ok " + cmd)
        m = c.poll(0.1)
        if m is not None:
            if m.error():
                if m.error().code() != KafkaError._PARTITION_EOF:
                    out(f"error {m.error()}")
            else:
                dirty = True
        if mode == "commit" and dirty and time.monotonic() - last_commit > 0.2:
            try:
                c.commit(asynchronous=False)
                dirty = False
                last_commit = time.monotonic()
            except Exception as e:  # noqa: BLE001 - reported, the member keeps going
                out(f"error commit {e}")
    c.close()


if __name__ == "__main__":
    main()
