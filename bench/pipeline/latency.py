"""Latency per hop: publish → accepted → request → row, for one Faust worker at a paced rate,
with the worker consumer's ``fetch_max_wait_ms`` at Faust's 1500 and at this project's setting,
side by side in one run.

Run: ``.venv/bin/python -m bench.pipeline.latency`` (starts the local stack if needed). Writes
``bench/results/latency.json``. For each fetch wait (a fresh worker, sink and topic prefix
each) and each rate, ``rate × seconds`` submissions are published at that rate and each is
followed through the records' timestamps (set by the client that produced each record):

- ``validate``: the submission's record → its ``accepted`` record (the first Faust hop);
- ``route``: ``accepted`` → its evaluation request (the second Faust hop);
- ``sink``: the request → its ``submissions`` row (PostgreSQL's clock, the same machine);
- ``total``: the submission's record → its row;
- ``queued_row``: the submission's record → its QUEUED row in ``status_events``.

p50 and p99 of each, in milliseconds.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka import Consumer

from bench import data
from bench.database import fresh_database
from bench.kafka import produce, produce_paced, wait_count
from bench.report import write_results
from devstack.processes import ServiceProcess
from devstack.stack import DevStack
from schemas.codec import decode
from speechstream.kafka.admin import create_topics
from speechstream.settings import DevSettings, KafkaSettings

RESULTS = Path("bench/results/latency.json")


def _timestamps(kafka: KafkaSettings, topic: str, wanted: set[str], timeout_s: float = 60.0
                ) -> dict[str, float]:
    """hash → the timestamp (s) of its first record on ``topic``, for the ``wanted`` hashes."""
    consumer = Consumer(kafka.to_librdkafka(**{
        "group.id": f"bench-latency-{uuid.uuid4().hex[:8]}", "auto.offset.reset": "earliest",
        "enable.auto.commit": False, "isolation.level": "read_committed",
    }))
    consumer.subscribe([topic])
    seen: dict[str, float] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while len(seen) < len(wanted) and time.monotonic() < deadline:
            for msg in consumer.consume(1000, timeout=0.5):
                if msg.error():
                    continue
                hash_ = decode(msg.value()).payload.hash
                if hash_ in wanted:
                    seen.setdefault(hash_, msg.timestamp()[1] / 1000.0)
    finally:
        consumer.close()
    return seen


def _quantiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"p50_ms": round(statistics.median(ordered), 1),
            "p99_ms": round(ordered[int(0.99 * (len(ordered) - 1))], 1)}


def _paced(kafka: KafkaSettings, conninfo: str, keys: list, rate: int, seconds: int, tag: str
           ) -> dict[str, Any]:
    """``rate × seconds`` submissions, one from each of ``keys``, sent at ``rate``/s."""
    topics = kafka.topics
    subs = list(data.submissions(keys, 1, tag=tag))
    produce_paced(kafka, topics.submissions, subs, rate)
    hashes = [h for _, _, h in subs]
    deadline = time.monotonic() + 60
    with psycopg.connect(conninfo, autocommit=True) as conn:
        while True:
            rows = dict(conn.execute(
                "SELECT hash, extract(epoch FROM created_at)::float8 FROM submissions"
                " WHERE hash = ANY(%s)", (hashes,)).fetchall())
            queued = dict(conn.execute(
                "SELECT hash, extract(epoch FROM min(written_at))::float8 FROM status_events"
                " WHERE status = 'QUEUED' AND hash = ANY(%s) GROUP BY hash",
                (hashes,)).fetchall())
            if (len(rows) >= len(hashes) and len(queued) >= len(hashes)) \
                    or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    wanted = set(hashes)
    published = _timestamps(kafka, topics.submissions, wanted)
    accepted = _timestamps(kafka, topics.accepted, wanted)
    requested = _timestamps(kafka, topics.evaluation_requests, wanted)
    hops: dict[str, list[float]] = {"validate": [], "route": [], "sink": [], "total": [],
                                    "queued_row": []}
    for h in hashes:
        if not all(h in d for d in (published, accepted, requested, rows, queued)):
            continue
        hops["validate"].append((accepted[h] - published[h]) * 1000)
        hops["route"].append((requested[h] - accepted[h]) * 1000)
        hops["sink"].append((rows[h] - requested[h]) * 1000)
        hops["total"].append((rows[h] - published[h]) * 1000)
        hops["queued_row"].append((queued[h] - published[h]) * 1000)
    result: dict[str, Any] = {"rate_per_s": rate, "submissions": len(hashes),
                              "followed": len(hops["total"])}
    for hop, values in hops.items():
        if values:
            result[hop] = _quantiles(values)
    return result


def measure(up: Any, fetch_max_wait_ms: int, rates: list[int], seconds: int) -> list[dict]:
    """One fresh worker and sink with this fetch wait, each rate in turn."""
    prefix = f"lat{uuid.uuid4().hex[:6]}."
    kafka = KafkaSettings(KAFKA_BOOTSTRAP_SERVERS=up.bootstrap_servers,
                          SPEECHSTREAM_TOPIC_PREFIX=prefix)
    create_topics(kafka)
    conninfo = fresh_database(up.database_url, f"bench_latency_{fetch_max_wait_ms}")
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
           "SPEECHSTREAM_TOPIC_PREFIX": prefix, "DATABASE_URL": conninfo,
           "SPEECHSTREAM_STREAMS_WEB_ENABLED": "false",
           "SPEECHSTREAM_STREAMS_DATA_DIR": f"/tmp/{prefix}streams",
           "SPEECHSTREAM_STREAMS_FETCH_MAX_WAIT_MS": str(fetch_max_wait_ms),
           # A group of its own each time: a static member rejoining its old group keeps
           # the old subscription's assignment until that session ends.
           "SPEECHSTREAM_SINK_GROUP_ID": f"{prefix}sink",
           "SPEECHSTREAM_SINK_INSTANCE_ID": f"{prefix}sink"}
    logs = Path(f"/tmp/{prefix}logs")
    worker = ServiceProcess("streams", ["streams", "worker"], logs / "streams.log", env).start()
    sink = ServiceProcess("sink", ["sink", "run"], logs / "sink.log", env).start()
    runs = []
    try:
        keys = data.miners(sum(rates) * seconds, seed=fetch_max_wait_ms)
        produce(kafka, kafka.topics.registrations, data.registrations(keys))
        wait_count(kafka, kafka.topics.miners, len(keys), 300, [worker])
        time.sleep(3)  # the miners agent updates its table just after the topic
        first = 0
        for i, rate in enumerate(rates):
            mine = keys[first:first + rate * seconds]  # miners of their own: no rate limit
            first += len(mine)
            run = _paced(kafka, conninfo, mine, rate, seconds, tag=f"r{i}")
            runs.append({"fetch_max_wait_ms": fetch_max_wait_ms, **run})
            print(runs[-1], flush=True)
    finally:
        worker.stop()
        sink.stop()
    return runs


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="1,100,400", help="paced submissions/s, in turn")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--fetch-waits", default="1500,100",
                        help="worker fetch_max_wait_ms values to compare")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    rates = [int(r) for r in args.rates.split(",")]
    up = DevStack(DevSettings()).up(KafkaSettings())
    result: dict[str, Any] = {"machine": f"{platform.machine()}, {platform.system()}, 2 cores",
                              "seconds_per_rate": args.seconds, "runs": []}
    for wait in (int(w) for w in args.fetch_waits.split(",")):
        result["runs"].extend(measure(up, wait, rates, args.seconds))
    return write_results(result, args.out)


if __name__ == "__main__":
    main()
