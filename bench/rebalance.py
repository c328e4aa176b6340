"""Intake workers joining, killed and leaving under a backlog, round after round: no stall, and
exactly one evaluation request (and one QUEUED row) per accepted submission each time.

Run: ``.venv/bin/python -m bench.rebalance`` (starts the local stack if needed; about 1.5
minutes a round). Writes ``bench/results/rebalance.json``. Each round, on topics and a
database of its own: one worker and the sink run, ``--miners`` miners register, and
submissions arrive at ``--rate``/s for ``--seconds``; meanwhile a second worker joins (at
5 s), a third joins (15 s), one of them is killed with SIGKILL (25 s) and another leaves
gracefully with SIGTERM (40 s). The round ends when every submission has its request.

A **stall** is a submission still without its request ``--stall-s`` (default 60) after it
was sent; the round stops there and its logs are kept (``--logs``). Per round: how long the
submissions waited for their requests (p50, p99, max), requests per submission (exactly one
event id each; a record written again under the same id is counted apart), and the QUEUED
rows that match the requests.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import statistics
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka import Consumer, Producer

from bench import data
from bench.database import fresh_database
from bench.kafka import count, produce, wait_count
from bench.report import write_results
from devstack.processes import ServiceProcess
from devstack.stack import DevStack
from schemas.codec import decode
from speechstream.kafka.admin import create_topics, delete_topics
from speechstream.settings import DevSettings, KafkaSettings

RESULTS = Path("bench/results/rebalance.json")
FAULTS = ((5.0, "join", "worker-b"), (15.0, "join", "worker-c"), (25.0, "kill", "worker-b"),
          (40.0, "leave", "worker-c"))
"""(seconds after the first submission, what, which worker)."""
SESSION_TIMEOUT_MS = 10_000
POLL_S = 0.25


class Requests:
    """The evaluation requests so far, read as they come: hash → their distinct event ids, and
    the records read (a record written again, with the same id, counts once per id)."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self._consumer = Consumer(kafka.to_librdkafka(**{
            "group.id": f"bench-rebalance-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest", "enable.auto.commit": False,
            "isolation.level": "read_committed"}))
        self._consumer.subscribe([kafka.topics.evaluation_requests])
        self.ids: dict[str, set[str]] = defaultdict(set)
        self.first_at: dict[str, float] = {}
        """hash → when its first request was read (wall clock)."""
        self.records = 0

    def read(self, timeout_s: float = 0.2) -> int:
        """Take what has arrived; how many hashes have a request."""
        for msg in self._consumer.consume(5000, timeout=timeout_s):
            if msg.error():
                continue
            env = decode(msg.value())
            self.ids[env.payload.hash].add(env.event_id)
            self.first_at.setdefault(env.payload.hash, time.time())
            self.records += 1
        return len(self.ids)

    def close(self) -> None:
        self._consumer.close()


def _rejections(kafka: KafkaSettings) -> tuple[dict[str, int], dict[str, str]]:
    """The rejections on ``submissions.rejected``: how many of each code, and each rejected
    hash's code (none of the bench's submissions should be rejected)."""
    consumer = Consumer(kafka.to_librdkafka(**{
        "group.id": f"bench-rebalance-{uuid.uuid4().hex[:6]}", "auto.offset.reset": "earliest",
        "enable.auto.commit": False, "isolation.level": "read_committed"}))
    consumer.subscribe([kafka.topics.rejected])
    codes: dict[str, int] = defaultdict(int)
    hashes: dict[str, str] = {}
    try:
        while messages := consumer.consume(5000, timeout=3.0):
            for msg in messages:
                if msg.error():
                    continue
                p = decode(msg.value()).payload
                codes[str(p.code)] += 1
                if getattr(p, "hash", None):
                    hashes[p.hash] = f"{p.code}: {p.message}"
    finally:
        consumer.close()
    return dict(codes), hashes


class Round:
    """One round: its topics, database, services and measurements."""

    def __init__(self, up: Any, index: int, args: argparse.Namespace, logs: Path) -> None:
        self.index = index
        self.args = args
        self.prefix = f"rb{uuid.uuid4().hex[:6]}."
        self.kafka = KafkaSettings(KAFKA_BOOTSTRAP_SERVERS=up.bootstrap_servers,
                                   SPEECHSTREAM_TOPIC_PREFIX=self.prefix)
        create_topics(self.kafka)
        self.conninfo = fresh_database(up.database_url, args.database)
        self.logs = logs / f"round{index:02d}"
        self.env = {
            "KAFKA_BOOTSTRAP_SERVERS": up.bootstrap_servers, "SPEECHSTREAM_TOPIC_PREFIX":
            self.prefix, "DATABASE_URL": self.conninfo, "SPEECHSTREAM_TRUST_INSECURE": "true",
            "SPEECHSTREAM_STREAMS_WEB_ENABLED": "false",
            "SPEECHSTREAM_STREAMS_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS),
            "SPEECHSTREAM_STREAMS_LOG_LEVEL": "INFO",
            # A stalled table recovery is logged with its diagnosis well before --stall-s.
            "SPEECHSTREAM_STREAMS_RECOVERY_STALL_S": "15",
            "SPEECHSTREAM_SINK_GROUP_ID": f"{self.prefix}sink",
            "SPEECHSTREAM_SINK_INSTANCE_ID": f"{self.prefix}sink",
            "SPEECHSTREAM_SINK_BATCH_TIMEOUT_S": "0.1",
        }
        self.services: dict[str, ServiceProcess] = {}
        self.events: list[dict[str, Any]] = []
        self.started = 0.0

    def start(self, name: str, args: list[str]) -> ServiceProcess:
        env = dict(self.env)
        if name.startswith("worker"):
            env["SPEECHSTREAM_STREAMS_DATA_DIR"] = str(self.logs / f"{name}-data")
        service = ServiceProcess(name, args, self.logs / f"{name}.log", env).start()
        self.services[name] = service
        return service

    def fault(self, what: str, name: str) -> None:
        at = round(time.monotonic() - self.started, 2)
        if what == "join":
            self.start(name, ["streams", "worker"])
        else:
            process = self.services[name].process
            assert process is not None
            os.killpg(process.pid, signal.SIGKILL if what == "kill" else signal.SIGTERM)
            process.wait(timeout=60)
        self.events.append({"at_s": at, "what": what, "worker": name,
                            "requests": count(self.kafka, self.kafka.topics.evaluation_requests)})

    def run(self) -> dict[str, Any]:
        args = self.args
        keys = data.miners(args.miners, seed=self.index)
        self.start("worker-a", ["streams", "worker"])
        self.start("sink", ["sink", "run"])
        produce(self.kafka, self.kafka.topics.registrations, data.registrations(keys))
        wait_count(self.kafka, self.kafka.topics.miners, len(keys), 120,
                   self.services.values())
        time.sleep(3)  # the miners agent updates its table just after the topic
        per_miner = max(1, round(args.rate * args.seconds / args.miners))
        subs = list(data.submissions(keys, per_miner, tag=f"r{self.index}"))
        n = len(subs)

        self.started = time.monotonic()
        timers = [threading.Timer(at, self.fault, (what, name)) for at, what, name in FAULTS]
        for timer in timers:
            timer.start()
        sent: dict[str, float] = {}  # hash → when it was handed to the producer

        def send() -> None:
            producer = Producer(self.kafka.producer_config(**{
                "linger.ms": 0, "enable.idempotence": True, "acks": "all"}))
            producer.list_topics(self.kafka.topics.submissions, timeout=10)
            for i, (key, value, hash_) in enumerate(subs):
                target = self.started + i / args.rate
                while (wait := target - time.monotonic()) > 0:
                    producer.poll(min(wait, 0.01))
                producer.produce(self.kafka.topics.submissions, value, key)
                sent[hash_] = time.time()
            producer.flush(60)

        sending = threading.Thread(target=send, daemon=True)
        sending.start()

        order = [h for _, _, h in subs]
        oldest, stalled = 0, False  # the first submission without a request yet
        requests = Requests(self.kafka)
        try:
            while oldest < n:
                requests.read(POLL_S)
                while oldest < n and order[oldest] in requests.ids:
                    oldest += 1
                sent_at = sent.get(order[oldest]) if oldest < n else None
                if sent_at is not None and time.time() - sent_at > args.stall_s:
                    stalled = True
                    break
            for timer in timers:
                timer.join()
            sending.join()
            time.sleep(2)
            requests.read(1.0)  # a request written again after the last one, counted
        finally:
            requests.close()

        rejected, rejected_hashes = _rejections(self.kafka)
        per_hash = [len(requests.ids.get(h, ())) for h in order]
        ids = {i for found in requests.ids.values() for i in found}
        queued = self._queued(ids)
        waits = sorted(requests.first_at[h] - sent[h] for h in order
                       if h in requests.first_at and h in sent)
        result = {
            "round": self.index, "submissions": n, "stalled": stalled,
            "request_ids": len(ids), "request_records": requests.records,
            "submissions_without_request": per_hash.count(0),
            "submissions_with_more_than_one": sum(1 for c in per_hash if c > 1),
            "queued_rows_matching_requests": queued,
            "rejections": {code: n for code, n in sorted(rejected.items())},
            "without_request": [
                {"hash": h, "rejected": rejected_hashes.get(h)} for h in order
                if h not in requests.ids][:10],
            "wait_for_request_s": {
                "p50": round(statistics.median(waits), 3) if waits else None,
                "p99": round(waits[int(0.99 * (len(waits) - 1))], 3) if waits else None,
                "max": round(waits[-1], 3) if waits else None},
            "faults": self.events,
        }
        result["exact"] = (not stalled and result["submissions_without_request"] == 0
                           and result["submissions_with_more_than_one"] == 0
                           and len(ids) == n and queued == n)
        return result

    def _queued(self, ids: set[str]) -> int:
        """QUEUED rows of the requests (waiting a while for the sink)."""
        deadline = time.monotonic() + 60
        while True:
            with psycopg.connect(self.conninfo) as conn:
                rows = {r[0] for r in conn.execute(
                    "SELECT event_id FROM status_events WHERE status = 'QUEUED'").fetchall()}
            if rows >= ids or time.monotonic() > deadline:
                return len(rows & ids) if rows <= ids else -len(rows - ids)
            time.sleep(1)

    def close(self, keep_logs: bool) -> None:
        """Stop the services; remove the round's topics and logs, or keep both (a round that
        was not exact)."""
        for service in self.services.values():
            if service.process is not None and service.process.poll() is None:
                service.stop()
        if not keep_logs:
            delete_topics(self.kafka, [name for name, _ in self.kafka.topics.all()])
            shutil.rmtree(self.logs, ignore_errors=True)
        else:
            (self.logs / "topic-prefix").write_text(self.prefix + "\n")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--miners", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20.0, help="submissions/s")
    parser.add_argument("--seconds", type=float, default=50.0, help="of sending")
    parser.add_argument("--stall-s", type=float, default=60.0)
    parser.add_argument("--logs", type=Path, default=Path("build/bench-rebalance"))
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--database", default="bench_rebalance",
                        help="the database each round recreates (two runs side by side need "
                        "one each)")
    args = parser.parse_args(argv)

    up = DevStack(DevSettings()).up(KafkaSettings())
    rounds: list[dict[str, Any]] = []
    for index in range(1, args.rounds + 1):
        current = Round(up, index, args, args.logs)
        result: dict[str, Any] | None = None
        try:
            result = current.run()
        finally:
            current.close(keep_logs=result is None or not result["exact"])
        rounds.append(result)
        print(f"round {index}: {'ok' if result['exact'] else 'NOT EXACT'}, stalled="
              f"{result['stalled']}, longest wait for a request "
              f"{result['wait_for_request_s']['max']} s, rejections {result['rejections']}"
              + (f", without a request: {result['without_request']}"
                 if result["without_request"] else ""), flush=True)
    waits = [r["wait_for_request_s"]["max"] or 0.0 for r in rounds]
    return write_results({
        "machine": f"{platform.machine()}, {platform.system()}, {os.cpu_count()} cores",
        "scenario": [{"at_s": at, "what": what, "worker": name} for at, what, name in FAULTS],
        "rounds": len(rounds), "stalls": sum(r["stalled"] for r in rounds),
        "exact_rounds": sum(r["exact"] for r in rounds),
        "submissions_per_round": rounds[0]["submissions"] if rounds else 0,
        "longest_wait_for_a_request_s": {"median": statistics.median(waits),
                                         "max": max(waits)} if waits else {},
        "per_round": rounds,
    }, args.out)


if __name__ == "__main__":
    main()
