"""Validation throughput of one Faust worker: submissions/s turned into evaluation requests.

Run: ``.venv/bin/python -m bench.streams [--miners N] [--submissions N]`` against
``KAFKA_BOOTSTRAP_SERVERS`` (default: the local stack of ``speechstream dev up``). It creates
topics under a fresh prefix, starts ``speechstream streams worker`` as a child process, loads
the registry, then produces a backlog of valid submissions and reports the rate from the
broker timestamps of the routed requests (first to last).
"""

from __future__ import annotations

import argparse
import json
import os
import time
import uuid
from pathlib import Path

from bench import data
from bench.kafka import produce, rate_from_timestamps, wait_count
from devstack.processes import ServiceProcess
from speechstream.kafka.admin import create_topics, delete_topics
from speechstream.settings import KafkaSettings


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds process ``pid`` (all its threads) has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def validated_per_s(kafka: KafkaSettings, n_miners: int, n_submissions: int
                    ) -> tuple[float, float]:
    """Submissions/s one worker validates and routes, on fresh topics under ``kafka``'s broker,
    and the worker's CPU microseconds per submission while it does (less sensitive than the
    rate to whatever else runs on the machine).

    ``kafka``'s topic prefix is replaced by a fresh one; those topics are deleted afterwards.
    """
    prefix = f"{kafka.topic_prefix}bench{uuid.uuid4().hex[:6]}."
    run = kafka.model_copy(update={"topic_prefix": prefix})
    create_topics(run)
    t = run.topics
    env = {"KAFKA_BOOTSTRAP_SERVERS": run.bootstrap_servers, "SPEECHSTREAM_TOPIC_PREFIX": prefix,
           "SPEECHSTREAM_STREAMS_WEB_ENABLED": "false",
           "SPEECHSTREAM_STREAMS_DATA_DIR": f"/tmp/{prefix}streams"}
    worker = ServiceProcess("streams", ["streams", "worker"], Path(f"/tmp/{prefix}streams.log"),
                            env)
    worker.start()
    try:
        keys = data.miners(n_miners)
        produce(run, t.registrations, data.registrations(keys))
        wait_count(run, t.miners, n_miners, 300, [worker])
        time.sleep(3)  # the miners agent updates its table just after the topic
        per_miner = max(1, n_submissions // n_miners)
        subs = [(k, v) for k, v, _ in data.submissions(keys, per_miner)]
        assert worker.process is not None
        cpu = cpu_seconds(worker.process.pid)
        produce(run, t.submissions, subs)
        wait_count(run, t.evaluation_requests, len(subs), 900, [worker])
        cpu = cpu_seconds(worker.process.pid) - cpu
        return (rate_from_timestamps(run, t.evaluation_requests, len(subs)),
                cpu * 1e6 / len(subs))
    finally:
        worker.stop()
        delete_topics(run, [name for name, _ in t.all()])


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run the benchmark and print its figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--miners", type=int, default=5_000)
    parser.add_argument("--submissions", type=int, default=50_000)
    args = parser.parse_args(argv)
    rate, cpu_us = validated_per_s(KafkaSettings(), args.miners, args.submissions)
    result = {"miners": args.miners, "submissions": args.submissions,
              "validated_per_s": round(rate), "worker_cpu_us_per_submission": round(cpu_us)}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
