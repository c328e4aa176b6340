"""The sink against its ceiling: the running sink draining a backlog, and its batch writer alone.

Run: ``.venv/bin/python -m bench.sink`` (needs ``KAFKA_BOOTSTRAP_SERVERS`` and ``DATABASE_URL``;
topics under a fresh prefix, fresh databases). Prints one JSON object:
- sink_rows_per_s: rows/s ``speechstream sink run`` writes while draining a backlog of
  miners and evaluation requests (each request is two rows: its submission and its QUEUED
  status; database write times, first to last, as ``bench.pipeline.run`` measures it);
- copy_merge_rows_per_s: the same number of rows written straight by the sink's batch writer
  (:func:`copy_merge_ceiling`, no Kafka), measured right after, and their ratio.
"""

from __future__ import annotations

import argparse
import json
import secrets
import time
import uuid
from pathlib import Path

import psycopg

from bench import data
from bench.database import fresh_database, sink_rows_per_s
from bench.kafka import produce
from devstack.processes import ServiceProcess
from schemas import EvaluationRequested, new_envelope
from schemas.codec import encode
from schemas.envelope import Envelope
from sinks.postgres import PostgresWriter
from sinks.settings import SinkSettings
from speechstream.kafka.admin import create_topics, delete_topics
from speechstream.settings import DatabaseSettings, KafkaSettings

HK = "ab" * 32


ROWS_PER_REQUEST = 2
"""A request's rows: its submission and its QUEUED status."""


def backlog(n_requests: int) -> list[Envelope]:
    """``n_requests`` evaluation requests, as the intake worker routes them. Hashes are fresh on
    every call (random 20 digits), so runs against the same tables insert new rows and do not
    conflict."""
    base = 10**19 + secrets.randbelow(8 * 10**19 - n_requests)
    envelopes = []
    for i in range(n_requests):
        h = str(base + i)
        req = EvaluationRequested(hash=h, hotkey=HK, uid=i % 256, repo_namespace=f"m{i}",
                                  repo_name="tts", block=10, source_event_id=f"s{i}")
        envelopes.append(new_envelope(req, key=h, producer="bench"))
    return envelopes


def copy_merge_ceiling(conninfo: str, n_rows: int, batch_size: int | None = None) -> float:
    """Rows/s written by the sink's batch writer with no Kafka in the way (``n_rows`` rows: the
    requests of :func:`backlog`, built before the clock starts), in batches of the sink's size
    (``SinkSettings.batch_size``) unless told."""
    batch_size = batch_size or SinkSettings().batch_size
    envelopes = backlog(n_rows // ROWS_PER_REQUEST)
    sink = PostgresWriter(conninfo)
    sink.start()
    try:
        start = time.perf_counter()
        for i in range(0, len(envelopes), batch_size):
            sink.write_batch(envelopes[i : i + batch_size])
        return ROWS_PER_REQUEST * len(envelopes) / (time.perf_counter() - start)
    finally:
        sink.close()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--miners", type=int, default=5_000)
    parser.add_argument("--submissions", type=int, default=50_000)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--sink-env", action="append", default=[], metavar="NAME=VALUE",
                        help="an extra environment variable for the sink (repeatable)")
    args = parser.parse_args(argv)

    tag = uuid.uuid4().hex[:6]
    prefix = f"benchsink{tag}."
    kafka = KafkaSettings(SPEECHSTREAM_TOPIC_PREFIX=prefix)
    create_topics(kafka)
    admin_url = DatabaseSettings().conninfo
    conninfo = fresh_database(admin_url, f"bench_sink_{tag}")
    topics = kafka.topics
    produce(kafka, topics.miners, data.registrations(data.miners(args.miners)))
    produce(kafka, topics.evaluation_requests,
            ((env.key, encode(env)) for env in backlog(args.submissions)))
    expected = args.miners + ROWS_PER_REQUEST * args.submissions

    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
           "SPEECHSTREAM_TOPIC_PREFIX": prefix, "DATABASE_URL": conninfo,
           "SPEECHSTREAM_SINK_GROUP_ID": f"{prefix}sink",
           "SPEECHSTREAM_SINK_INSTANCE_ID": f"{prefix}sink",
           **dict(pair.split("=", 1) for pair in args.sink_env)}
    log = Path(f"/tmp/{prefix}logs/sink.log")
    sink = ServiceProcess("sink", ["sink", "run"], log, env).start()
    result: dict = {"rows": expected, "sink_pid": sink.process.pid if sink.process else None}
    try:
        deadline = time.monotonic() + args.timeout
        while sink_rows_per_s(conninfo)[0] < expected:
            sink.check()
            if time.monotonic() > deadline:
                raise TimeoutError(f"sink did not catch up in {args.timeout} s; log {log}")
            time.sleep(0.5)
        result["sink_rows_per_s"] = round(sink_rows_per_s(conninfo)[1])
        ceiling = fresh_database(admin_url, f"bench_sink_ceiling_{tag}")
        result["copy_merge_rows_per_s"] = round(copy_merge_ceiling(ceiling, expected))
        result["ratio"] = round(result["sink_rows_per_s"] / result["copy_merge_rows_per_s"], 3)
    finally:
        sink.stop()
        delete_topics(kafka, [name for name, _ in topics.all()])
        with psycopg.connect(admin_url, autocommit=True) as conn:
            for name in (f"bench_sink_{tag}", f"bench_sink_ceiling_{tag}"):
                conn.execute(psycopg.sql.SQL("DROP DATABASE IF EXISTS {}").format(
                    psycopg.sql.Identifier(name)))
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
