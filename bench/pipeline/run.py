"""Pipeline benchmark: produce → validate (Faust) → route → sink (PostgreSQL), with ceilings.

Run: ``.venv/bin/python -m bench.pipeline.run`` (starts the local stack if needed). Writes
``bench/results/pipeline.json``. Every figure comes from one run on one broker and database:
- validated_per_s: submissions/s one Faust worker turns into evaluation requests (from the
  output records' broker timestamps, first to last);
- sink_rows_per_s: rows/s the sink writes while draining the backlog (database write times);
- passthrough_per_s: a raw confluent-kafka consume→produce loop over the same records;
- worker_cpu_us_per_submission: the worker process's CPU time (all its threads) per
  submission while it validates them;
- faust_consume_per_s / faust_send_per_s / faust_take_per_s / faust_two_hop_per_s: Faust's
  own ceilings, a trivial agent (two in a row for two_hop) over the first 30,000 of the same
  records (``bench.pipeline.faust_ceiling``), and validated_vs_faust_send /
  validated_vs_faust_two_hop, the worker's rate as a share of those;
- validated_per_s_2_workers: the same with two worker processes in one consumer group (on
  topics of their own), and two_workers_vs_one;
- copy_merge_rows_per_s: the same rows written straight from Python by the sink's batch writer
  (COPY, one merge a table and batch), no Kafka;
- p50_ms / p99_ms: produce → row latency at a paced rate (default 100 submissions/s), and
  the same with the suffix ``_half`` at half of validated_per_s.
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

from bench import data
from bench.database import fresh_database, sink_rows_per_s
from bench.kafka import count, produce, produce_paced, rate_from_timestamps, wait_count
from bench.pipeline.ceilings import faust_ceilings, passthrough_per_s
from bench.report import write_results
from bench.sink import copy_merge_ceiling
from bench.streams import cpu_seconds
from devstack.processes import ServiceProcess
from devstack.stack import DevStack
from schemas.topics import SUBMISSIONS
from speechstream.kafka.admin import create_topics, group_members_with_partitions
from speechstream.settings import DevSettings, KafkaSettings

RESULTS = Path("bench/results/pipeline.json")
FAUST_CEILING_RECORDS = 30_000


def _paced_latency(
    kafka: KafkaSettings, conninfo: str, worker: ServiceProcess, rate: int, seconds: int, *,
    uid_base: int, tag: str,
) -> dict:
    """p50/p99 produce → submissions row of ``rate × seconds`` submissions sent at ``rate``/s."""
    topics = kafka.topics
    fresh = data.miners(max(1, rate * seconds // 10), seed=sum(map(ord, tag)))
    produce(kafka, topics.registrations, data.registrations(fresh, uid_base=uid_base))
    wait_count(kafka, topics.miners, uid_base + len(fresh), 300, [worker])
    time.sleep(3)  # the miners agent updates its table just after the topic
    paced = list(data.submissions(fresh, 10, tag=tag))
    sent = produce_paced(kafka, topics.submissions, paced, rate)
    deadline = time.monotonic() + 300
    with psycopg.connect(conninfo, autocommit=True) as conn:
        while True:
            rows = conn.execute(
                "SELECT hash, extract(epoch FROM created_at) FROM submissions"
                " WHERE hash = ANY(%s)", (list(sent),)).fetchall()
            if len(rows) >= len(sent) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    lat = sorted((float(t) - sent[h]) * 1000 for h, t in rows)
    return {"miners": len(fresh), "paced_rate_per_s": rate, "paced_rows": len(lat),
            "p50_ms": round(statistics.median(lat), 1),
            "p99_ms": round(lat[int(0.99 * (len(lat) - 1))], 1)}


def _validated_by(up: Any, workers: int, keys: list, subs: list, logs: Path) -> float:
    """Submissions/s that ``workers`` worker processes in one group validate, on topics of
    their own (the same miners and submissions as the one-worker phase)."""
    prefix = f"bench{uuid.uuid4().hex[:6]}w{workers}."
    kafka = KafkaSettings(KAFKA_BOOTSTRAP_SERVERS=up.bootstrap_servers,
                          SPEECHSTREAM_TOPIC_PREFIX=prefix)
    create_topics(kafka)
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
           "SPEECHSTREAM_TOPIC_PREFIX": prefix, "SPEECHSTREAM_STREAMS_WEB_ENABLED": "false"}
    procs = [ServiceProcess(f"streams-{i}", ["streams", "worker"], logs / f"{prefix}{i}.log",
                            {**env, "SPEECHSTREAM_STREAMS_DATA_DIR": f"/tmp/{prefix}streams{i}"}
                            ).start() for i in range(workers)]
    try:
        produce(kafka, kafka.topics.registrations, data.registrations(keys))
        wait_count(kafka, kafka.topics.miners, len(keys), 300, procs)
        group = f"{prefix}speechstream-intake"
        deadline = time.monotonic() + 120
        while group_members_with_partitions(kafka, group) < workers:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{group}: not {workers} members with partitions in 120 s")
            time.sleep(0.5)
        time.sleep(3)  # the miners agent updates its table just after the topic
        produce(kafka, kafka.topics.submissions, subs)
        wait_count(kafka, kafka.topics.evaluation_requests, len(subs), 900, procs)
        return rate_from_timestamps(kafka, kafka.topics.evaluation_requests, len(subs))
    finally:
        for proc in procs:
            proc.stop()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--miners", type=int, default=5_000)
    parser.add_argument("--submissions", type=int, default=50_000)
    parser.add_argument("--rate", type=int, default=100, help="paced submissions/s")
    parser.add_argument("--paced-seconds", type=int, default=10)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    per_miner = max(1, args.submissions // args.miners)

    prefix = f"bench{uuid.uuid4().hex[:6]}."
    up = DevStack(DevSettings()).up(KafkaSettings())
    kafka = KafkaSettings(KAFKA_BOOTSTRAP_SERVERS=up.bootstrap_servers,
                          SPEECHSTREAM_TOPIC_PREFIX=prefix)
    create_topics(kafka)
    conninfo = fresh_database(up.database_url, "bench_pipeline")
    topics = kafka.topics
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
           "SPEECHSTREAM_TOPIC_PREFIX": prefix, "DATABASE_URL": conninfo,
           "SPEECHSTREAM_STREAMS_WEB_ENABLED": "false",
           "SPEECHSTREAM_STREAMS_DATA_DIR": f"/tmp/{prefix}streams"}
    logs = Path(f"/tmp/{prefix}logs")
    worker = ServiceProcess("streams", ["streams", "worker"], logs / "streams.log", env).start()
    sink = ServiceProcess("sink", ["sink", "run"], logs / "sink.log", env)
    result: dict = {"machine": f"{platform.machine()}, {platform.system()}, 2 cores",
                    "miners": args.miners, "submissions": per_miner * args.miners}
    try:
        keys = data.miners(args.miners)
        produce(kafka, topics.registrations, data.registrations(keys))
        wait_count(kafka, topics.miners, args.miners, 300, [worker])
        time.sleep(3)  # the miners agent updates its table just after the topic
        subs = list(data.submissions(keys, per_miner))
        assert worker.process is not None
        cpu = cpu_seconds(worker.process.pid)
        result["produce_per_s"] = round(produce(kafka, topics.submissions, subs))
        n = len(subs)
        wait_count(kafka, topics.evaluation_requests, n, 900, [worker])
        result["worker_cpu_us_per_submission"] = round(
            (cpu_seconds(worker.process.pid) - cpu) * 1e6 / n)
        result["validated_per_s"] = round(
            rate_from_timestamps(kafka, topics.evaluation_requests, n)
        )
        result["rejected"] = count(kafka, topics.rejected)
        # Faust's own ceilings, over the same records, while the worker idles.
        ceilings = faust_ceilings(env, topics.submissions, min(n, FAUST_CEILING_RECORDS))
        for mode, rate in ceilings.items():
            key = mode.replace("-", "_")
            result[f"faust_{key}_per_s"] = rate
            if rate and mode in ("send", "two-hop"):
                result[f"validated_vs_faust_{key}"] = round(result["validated_per_s"] / rate, 2)
        # Two workers in one group, on topics of their own (the one worker above idles).
        result["validated_per_s_2_workers"] = round(_validated_by(up, 2, keys, subs, logs))
        result["two_workers_vs_one"] = round(
            result["validated_per_s_2_workers"] / result["validated_per_s"], 2)

        sink.start()
        expected = args.miners + 2 * n
        deadline = time.monotonic() + 600
        while sink_rows_per_s(conninfo)[0] < expected:
            sink.check()
            if time.monotonic() > deadline:
                raise TimeoutError("sink did not catch up in 600 s")
            time.sleep(0.5)
        rows, rate = sink_rows_per_s(conninfo)
        result["sink_rows"] = rows
        result["sink_rows_per_s"] = round(rate)

        scratch = kafka.model_copy(update={"topic_prefix": f"{prefix}passthrough."})
        create_topics(scratch, (SUBMISSIONS,))
        result["passthrough_per_s"] = round(
            passthrough_per_s(kafka, topics.submissions, scratch.topics.submissions, n)
        )
        result["copy_merge_rows_per_s"] = round(copy_merge_ceiling(
            fresh_database(up.database_url, "bench_ceiling"), expected))

        # Paced phases: latency produce → row at the target rate, then at half the rate the
        # worker sustained above (latency when the worker keeps up rather than queues).
        uid_base = args.miners
        for rate, tag, suffix in ((args.rate, "p", ""),
                                  (max(1, result["validated_per_s"] // 2), "q", "_half")):
            paced = _paced_latency(kafka, conninfo, worker, rate, args.paced_seconds,
                                   uid_base=uid_base, tag=tag)
            uid_base += paced.pop("miners")
            result.update({f"{k}{suffix}": v for k, v in paced.items()})
    finally:
        worker.stop()
        sink.stop()
    return write_results(result, args.out)


if __name__ == "__main__":
    main()
