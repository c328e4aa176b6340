"""An hour under faults: submissions at a steady rate through two intake workers, the sink and
evaluators with an instant scorer, while a random service is killed (SIGKILL, restarted at
once, as a supervisor would) every few minutes and the broker is restarted twice.

Run: ``.venv/bin/python -m bench.endurance`` (defaults: 50 submissions/s for 60 minutes, a
kill every 5 minutes, the broker restarted at 20 and 40 minutes; minutes and more). It runs
its own broker (the local stack's jars) and a database of its own on the local stack's
PostgreSQL. Writes ``bench/results/endurance.json``:

- per fault: when, what, and the **time to full progress**: until every submission sent
  before the fault has its score row in PostgreSQL;
- at the end (after sending stops and the backlog drains, bounded by ``--drain-minutes``):
  per accepted submission its evaluation request ids, QUEUED rows and committed score events
  (each exactly one), and the score rows;
- each service's resident memory, sampled every 30 s: for each process that lived past
  ``--settle-minutes`` (10), the growth from then to its end;
- the evaluators' throughput, as scores per second over the run.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import signal
import statistics
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka import Consumer

from bench import data
from bench.database import fresh_database
from bench.kafka import produce, wait_count
from bench.report import write_results
from devstack.host import free_port
from devstack.kafka import KafkaNode
from devstack.processes import ServiceProcess
from devstack.stack import DevStack
from schemas.codec import decode
from speechstream.kafka.admin import create_topics
from speechstream.settings import DevSettings, KafkaSettings

RESULTS = Path("bench/results/endurance.json")
SCORER = "tests.scorers:DeterministicScorer"
SAMPLE_S = 30.0
PROGRESS_POLL_S = 2.0
BROKER_AWAY_S = 10.0
GLIBC_DEFAULT = {"SPEECHSTREAM_EVALUATOR_MALLOC_ARENA_MAX": "0",
                 "SPEECHSTREAM_EVALUATOR_MALLOC_TRIM": "false"}
"""An evaluator's environment for glibc's own malloc settings (``--glibc-default``)."""


def _rss_kib(pid: int) -> int | None:
    """Resident memory of ``pid`` in KiB (None once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class Fleet:
    """The services, by name; each restart is a new process, its memory samples kept apart."""

    def __init__(self, env: dict[str, str], logs: Path, evaluators: int,
                 glibc_default: frozenset[int] = frozenset()) -> None:
        self.env = env
        self.logs = logs
        self.commands: dict[str, tuple[list[str], dict[str, str]]] = {}
        for i in (1, 2):
            self.commands[f"worker-{i}"] = (["streams", "worker"], {
                "SPEECHSTREAM_STREAMS_DATA_DIR": str(logs / f"worker-{i}-data")})
        self.commands["sink"] = (["sink", "run"], {})
        for i in range(1, evaluators + 1):
            self.commands[f"evaluator-{i}"] = (
                ["evaluator", "run", "--scorer", SCORER],
                {"SPEECHSTREAM_EVALUATOR_EVALUATOR_ID": f"bench-evaluator-{i}",
                 **(GLIBC_DEFAULT if i in glibc_default else {})})
        self.running: dict[str, ServiceProcess] = {}
        self.lives: list[dict[str, Any]] = []
        self._starts: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()

    def start(self, name: str, t: float) -> None:
        args, extra = self.commands[name]
        self._starts[name] += 1
        log = self.logs / f"{name}-{self._starts[name]}.log"
        service = ServiceProcess(name, args, log, {**self.env, **extra}).start()
        with self._lock:
            self.running[name] = service
            assert service.process is not None
            self.lives.append({"service": name, "pid": service.process.pid, "started_s": t,
                               "samples": []})

    def kill(self, name: str) -> None:
        service = self.running[name]
        assert service.process is not None
        os.killpg(service.process.pid, signal.SIGKILL)
        service.process.wait(timeout=60)

    def sample(self, t: float) -> None:
        with self._lock:
            for life in self.lives:
                if life.get("ended_s") is None:
                    rss = _rss_kib(life["pid"])
                    if rss is None:
                        life["ended_s"] = t
                    else:
                        life["samples"].append((round(t, 1), rss))

    def restart_dead(self, t: float) -> list[str]:
        """Restart the services that exited on their own (a failure of the run); their
        names."""
        dead = [name for name, service in self.running.items()
                if service.process is not None and service.process.poll() is not None]
        for name in dead:
            self.start(name, t)
        return dead

    def stop(self) -> None:
        for service in self.running.values():
            if service.process is not None and service.process.poll() is None:
                service.stop()


def _memory(lives: list[dict[str, Any]], settle_s: float) -> list[dict[str, Any]]:
    """Growth of each process's resident memory from ``settle_s`` after its start to its end."""
    report = []
    for life in lives:
        samples = [(t, rss) for t, rss in life["samples"] if t - life["started_s"] >= settle_s]
        if len(samples) < 2:
            continue
        (t0, first), (t1, last) = samples[0], samples[-1]
        report.append({"service": life["service"], "pid": life["pid"],
                       "from_s": t0, "to_s": t1, "rss_mib_from": round(first / 1024, 1),
                       "rss_mib_to": round(last / 1024, 1),
                       "growth_pct": round(100 * (last - first) / first, 1)})
    return report


def _side_by_side(memory: list[dict[str, Any]], glibc_default: set[int]) -> dict[str, Any]:
    """The evaluators' memory growth, those with glibc's malloc defaults beside the others."""
    groups: dict[str, list[dict[str, Any]]] = {"glibc_default": [], "capped_and_trimmed": []}
    for m in memory:
        if m["service"].startswith("evaluator-"):
            number = int(m["service"].rsplit("-", 1)[1])
            groups["glibc_default" if number in glibc_default
                   else "capped_and_trimmed"].append(m)
    return {name: {"evaluators": sorted({m["service"] for m in found}),
                   "growth_pct": [m["growth_pct"] for m in found],
                   "rss_mib_to": [m["rss_mib_to"] for m in found]}
            for name, found in groups.items()}


def _ids_by_hash(kafka: KafkaSettings, topic: str, *, only: str | None = None
                 ) -> dict[str, set[str]]:
    """hash → the committed event ids of ``topic`` about it (its statuses: only ``only``)."""
    consumer = Consumer(kafka.to_librdkafka(**{
        "group.id": f"bench-endurance-{uuid.uuid4().hex[:6]}", "auto.offset.reset": "earliest",
        "enable.auto.commit": False, "isolation.level": "read_committed",
        "enable.partition.eof": True}))
    consumer.subscribe([topic])
    found: dict[str, set[str]] = defaultdict(set)
    eof: set[tuple[str, int]] = set()
    partitions = len(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
    try:
        while len(eof) < partitions:
            for msg in consumer.consume(5000, timeout=1.0):
                error = msg.error()
                if error is not None:
                    if error.code() == error._PARTITION_EOF:
                        eof.add((msg.topic(), msg.partition()))
                    continue
                eof.discard((msg.topic(), msg.partition()))
                env = decode(msg.value())
                if only is None or getattr(env.payload, "status", None) == only:
                    found[env.payload.hash].add(env.event_id)
    finally:
        consumer.close()
    return dict(found)


def main(argv: list[str] | None = None) -> dict:  # noqa: PLR0915 - one scenario, in order
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=50.0, help="submissions/s")
    parser.add_argument("--miners", type=int, default=250)
    parser.add_argument("--evaluators", type=int, default=4)
    parser.add_argument("--kill-every-minutes", type=float, default=5.0)
    parser.add_argument("--broker-restarts-at", type=float, nargs="*", default=[20.0, 40.0],
                        help="minutes")
    parser.add_argument("--settle-minutes", type=float, default=10.0)
    parser.add_argument("--drain-minutes", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--glibc-default", type=int, nargs="*", default=[], metavar="N",
                        help="evaluators (by number) left with glibc's malloc arenas and no "
                        "trim, to compare side by side with the others")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)

    up = DevStack(DevSettings()).up(KafkaSettings())
    work = Path(tempfile.mkdtemp(prefix="speechstream-bench-endurance-"))
    node = KafkaNode(work / "kafka", DevSettings().cache_dir, free_port(), free_port(),
                     heap="1g")
    node.start()
    node.wait_ready(120)
    prefix = f"end{uuid.uuid4().hex[:6]}."
    kafka = KafkaSettings(KAFKA_BOOTSTRAP_SERVERS=node.bootstrap_servers,
                          SPEECHSTREAM_TOPIC_PREFIX=prefix)
    create_topics(kafka)
    conninfo = fresh_database(up.database_url, "bench_endurance")
    env = {"KAFKA_BOOTSTRAP_SERVERS": node.bootstrap_servers, "SPEECHSTREAM_TOPIC_PREFIX": prefix,
           "DATABASE_URL": conninfo, "SPEECHSTREAM_TRUST_INSECURE": "true",
           "SPEECHSTREAM_STREAMS_WEB_ENABLED": "false",
           "SPEECHSTREAM_SINK_GROUP_ID": f"{prefix}sink",
           "SPEECHSTREAM_SINK_INSTANCE_ID": f"{prefix}sink",
           "SPEECHSTREAM_EVALUATOR_GROUP_ID": f"{prefix}evaluators",
           "PYTHONPATH": str(Path.cwd())}
    fleet = Fleet(env, work / "logs", args.evaluators, frozenset(args.glibc_default))
    t0 = time.monotonic()

    def now() -> float:
        return time.monotonic() - t0

    result: dict[str, Any] = {
        "machine": f"{platform.machine()}, {platform.system()}, {os.cpu_count()} cores",
        "minutes": args.minutes, "rate_per_s": args.rate, "miners": args.miners,
        "services": sorted(fleet.commands), "scorer": SCORER}
    try:
        for name in fleet.commands:
            fleet.start(name, now())
        keys = data.miners(args.miners, seed=args.seed)
        produce(kafka, kafka.topics.registrations, data.registrations(keys))
        wait_count(kafka, kafka.topics.miners, len(keys), 300, fleet.running.values())
        time.sleep(3)  # the miners agent updates its table just after the topic
        total = int(args.rate * args.minutes * 60)
        per_miner = -(-total // args.miners)
        subs = list(data.submissions(keys, per_miner, tag="e"))[:total]

        sent = [0]  # how many have been handed to the producer
        stop_sending = threading.Event()

        def send() -> None:
            producer = _producer(kafka)
            start = time.monotonic()
            for i, (key, value, _hash) in enumerate(subs):
                if stop_sending.is_set():
                    break
                target = start + i / args.rate
                while (wait := target - time.monotonic()) > 0:
                    producer.poll(min(wait, 0.05))
                while True:
                    try:
                        producer.produce(kafka.topics.submissions, value, key)
                        break
                    except BufferError:  # the broker away: the queue fills, then waits
                        producer.poll(0.1)
                sent[0] = i + 1
            producer.flush(600)

        sending = threading.Thread(target=send, daemon=True)
        sending_started = now()
        sending.start()

        # The faults: a random service killed (and restarted at once) every few minutes, the
        # broker away for a few seconds at the given minutes.
        faults: list[dict[str, Any]] = []
        died: list[dict[str, Any]] = []
        schedule = [(m * 60, "kill") for m in _steps(args.kill_every_minutes, args.minutes)]
        schedule += [(m * 60, "broker") for m in args.broker_restarts_at if m < args.minutes]
        schedule.sort()
        next_sample = 0.0
        scored_curve: list[tuple[float, int]] = []
        with psycopg.connect(conninfo, autocommit=True) as conn:
            def scored() -> int:
                return conn.execute("SELECT count(*) FROM scores").fetchone()[0]

            while sending.is_alive() or any(f.get("full_progress_s") is None for f in faults):
                t = now()
                if t >= next_sample:
                    fleet.sample(t)
                    next_sample = t + SAMPLE_S
                if schedule and t - sending_started >= schedule[0][0]:
                    _, kind = schedule.pop(0)
                    fault: dict[str, Any] = {"at_s": round(t, 1), "kind": kind,
                                             "sent_before": sent[0]}
                    if kind == "kill":
                        name = rng.choice(sorted(fleet.commands))
                        fault["service"] = name
                        fleet.kill(name)
                        fleet.start(name, now())
                    else:
                        node.stop()
                        time.sleep(BROKER_AWAY_S)
                        node.start(install=False)
                        node.wait_ready(120)
                        fault["broker_away_s"] = round(now() - t, 1)
                    faults.append(fault)
                    print(f"{t / 60:5.1f} min: {fault}", flush=True)
                have = _try(scored)
                if have is not None:
                    scored_curve.append((round(t, 1), have))
                    _progressed(faults, have, now())
                if not sending.is_alive() and t - sending_started > args.minutes * 60 \
                        + args.drain_minutes * 60:
                    break
                for name in fleet.restart_dead(now()):
                    died.append({"at_s": round(now(), 1), "service": name})
                    print(f"{now() / 60:5.1f} min: {name} DIED on its own; restarted", flush=True)
                time.sleep(PROGRESS_POLL_S)
            sent_all = sent[0]
            deadline = time.monotonic() + args.drain_minutes * 60
            while (have := _try(scored) or 0) < sent_all and time.monotonic() < deadline:
                _progressed(faults, have, now())
                fleet.sample(now())
                time.sleep(5)
            _progressed(faults, have, now())
            drained_at = now()
            fleet.sample(drained_at)

            hashes = [h for _, _, h in subs[:sent_all]]
            requests = _ids_by_hash(kafka, kafka.topics.evaluation_requests)
            scores = _ids_by_hash(kafka, kafka.topics.scores)
            queued_rows = dict(conn.execute(
                "SELECT hash, count(*) FROM status_events WHERE status = 'QUEUED'"
                " GROUP BY hash").fetchall())
            score_rows = dict(conn.execute(
                "SELECT hash, count(*) FROM scores GROUP BY hash").fetchall())

        def exactly_one(found: dict[str, Any]) -> dict[str, int]:
            counts = [len(found[h]) if isinstance(found.get(h), set) else int(found.get(h, 0))
                      for h in hashes]
            return {"none": counts.count(0), "one": counts.count(1),
                    "more": sum(1 for c in counts if c > 1)}

        result.update({
            "submissions_sent": sent_all, "sent_for_s": round(args.minutes * 60, 1),
            "drained_s_after_last_sent": round(drained_at - sending_started
                                               - args.minutes * 60, 1),
            "requests": exactly_one(requests), "queued_rows": exactly_one(queued_rows),
            "score_events": exactly_one(scores), "score_rows": exactly_one(score_rows),
            "faults": faults, "died_on_their_own": died,
            "scores_per_s": round(have / max(drained_at - sending_started, 1e-9), 1),
            "memory": _memory(fleet.lives, args.settle_minutes * 60),
        })
        exact = all(result[k]["one"] == sent_all
                    for k in ("requests", "queued_rows", "score_events", "score_rows"))
        growth = [m["growth_pct"] for m in result["memory"]]
        result["exact"] = exact and not died
        result["max_memory_growth_pct"] = max(growth) if growth else None
        if args.glibc_default:
            result["evaluator_memory_side_by_side"] = _side_by_side(
                result["memory"], set(args.glibc_default))
        result["full_progress_s"] = {
            "median": statistics.median(f["full_progress_s"] for f in faults
                                        if f.get("full_progress_s") is not None)
            if faults else None,
            "max": max((f.get("full_progress_s") or 0 for f in faults), default=None)}
        result["scored_curve_every_5_min"] = [
            p for i, p in enumerate(scored_curve) if i % max(1, int(300 / PROGRESS_POLL_S)) == 0]
    finally:
        fleet.stop()
        node.stop()
        keep = work / "logs"
        if keep.exists():
            shutil.copytree(keep, Path("build/bench-endurance-logs"), dirs_exist_ok=True)
        shutil.rmtree(work, ignore_errors=True)
    return write_results(result, args.out)


def _progressed(faults: list[dict[str, Any]], scored: int, t: float) -> None:
    """Note the time to full progress of each fault whose submissions are all scored now."""
    for fault in faults:
        if fault.get("full_progress_s") is None and scored >= fault["sent_before"]:
            fault["full_progress_s"] = round(t - fault["at_s"], 1)


def _producer(kafka: KafkaSettings) -> Any:
    from confluent_kafka import Producer

    return Producer(kafka.producer_config(**{
        "linger.ms": 5, "enable.idempotence": True, "acks": "all",
        "message.timeout.ms": 600_000, "log_level": 2}))  # quiet while the broker is away


def _steps(every: float, until: float) -> list[float]:
    steps, t = [], every
    while t < until:
        steps.append(t)
        t += every
    return steps


def _try(call: Any) -> Any:
    try:
        return call()
    except psycopg.Error:
        return None


if __name__ == "__main__":
    main()
