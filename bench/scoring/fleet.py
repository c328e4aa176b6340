"""What a second evaluator in the group adds: N requests of a tiny model scored by one
evaluator, then by two in one consumer group, on this machine, side by side in one run.

Run: ``.venv/bin/python -m bench.scoring.fleet [--requests 8] [--samples 8]`` (starts the local
stack if needed). Each way gets a fresh topic prefix and group; its evaluators
(``speechstream evaluator run``, the TTS scorer, warm processes on) have all joined the group
before the requests are published at once to ``evaluation.requests``, spread evenly over its
partitions. The figure is the time
from the first request record to the last score record (broker timestamps), the scores per
evaluator, and the ratios. A third way runs the two evaluators with the cores split between
them (``OMP_NUM_THREADS`` = cores / 2 each: torch otherwise runs as many threads as there are
cores in each). Writes ``bench/results/fleet.json``.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from bench.pipeline.latency import _timestamps
from bench.report import write_results
from devstack.processes import ServiceProcess
from devstack.stack import DevStack
from devstack.tiny.musicgen import build_tiny_musicgen
from schemas.codec import decode, encode
from schemas.envelope import new_envelope
from schemas.events import EvaluationRequested, ScoreComputed
from speechstream.kafka.admin import create_topics
from speechstream.settings import DevSettings, KafkaSettings

RESULTS = Path(__file__).resolve().parents[1] / "results" / "fleet.json"


def _request(i: int) -> tuple[str, bytes]:
    hash_ = str(3 * 10**15 + i)
    request = EvaluationRequested(
        hash=hash_, hotkey=f"{i % 256:02x}" * 32, uid=i % 256, repo_namespace="bench",
        repo_name="tiny", block=1000 + i, scoring_version="v2", source_event_id=f"fleet-{i}",
    )
    return hash_, encode(new_envelope(request, key=hash_, producer="bench"))


def _produce_spread(kafka: KafkaSettings, topic: str, records: list[tuple[str, bytes]]) -> None:
    """Publish ``records`` round-robin over the topic's partitions (the intake places requests
    by hash; here every evaluator is to get the same share, whatever the hashes)."""
    producer = Producer(kafka.producer_config())
    partitions = len(producer.list_topics(topic, timeout=10).topics[topic].partitions)
    for i, (key, value) in enumerate(records):
        producer.produce(topic, value, key, partition=i % partitions)
    if producer.flush(60):
        raise TimeoutError(f"{topic}: requests still unsent after 60 s")


def _assignment(kafka: KafkaSettings, group: str) -> dict[str, list[str]]:
    """Each member's partitions (``topic[partition]``), by its instance id."""
    admin = AdminClient(kafka.to_librdkafka())
    try:
        described = admin.describe_consumer_groups([group])[group].result(timeout=10)
    except Exception:  # noqa: BLE001 - not there yet
        return {}
    return {str(m.group_instance_id or m.member_id): sorted(
                f"{tp.topic.removeprefix(kafka.topic_prefix)}[{tp.partition}]"
                for tp in m.assignment.topic_partitions)
            for m in described.members if m.assignment.topic_partitions}


def _scorers(kafka: KafkaSettings, hashes: set[str]) -> dict[str, int]:
    """Scores per evaluator (the evaluator the score names), read committed."""
    from confluent_kafka import Consumer

    consumer = Consumer(kafka.to_librdkafka(**{
        "group.id": f"bench-fleet-{uuid.uuid4().hex[:8]}", "auto.offset.reset": "earliest",
        "enable.auto.commit": False, "isolation.level": "read_committed"}))
    consumer.subscribe([kafka.topics.scores])
    per: dict[str, int] = {}
    seen: set[str] = set()
    deadline = time.monotonic() + 30
    try:
        while seen < hashes and time.monotonic() < deadline:
            for msg in consumer.consume(1000, timeout=0.5):
                if msg.error():
                    continue
                event = decode(msg.value()).payload
                if isinstance(event, ScoreComputed) and event.hash in hashes:
                    seen.add(event.hash)
                    per[event.evaluator] = per.get(event.evaluator, 0) + 1
    finally:
        consumer.close()
    return per


def _one_way(base: KafkaSettings, evaluators: int, n: int, env: dict[str, str],
             logs: Path) -> dict[str, Any]:
    prefix = f"flt{uuid.uuid4().hex[:6]}."
    kafka = base.model_copy(update={"topic_prefix": prefix})
    create_topics(kafka)
    group = f"{prefix}evaluators"
    services = [
        ServiceProcess(f"evaluator-{i}", ["evaluator", "run", "--device", "cpu"],
                       logs / f"{prefix}evaluator-{i}.log",
                       {**env, "SPEECHSTREAM_TOPIC_PREFIX": prefix,
                        "SPEECHSTREAM_EVALUATOR_GROUP_ID": group,
                        "SPEECHSTREAM_EVALUATOR_EVALUATOR_ID": f"fleet{i}"}).start()
        for i in range(evaluators)]
    try:
        deadline = time.monotonic() + 300
        while len(_assignment(kafka, group)) < evaluators:
            for service in services:
                service.check()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{evaluators} evaluators did not all join in 300 s")
            time.sleep(1)
        time.sleep(20)  # each evaluator's first process prepares, as it would between requests
        assignment = _assignment(kafka, group)
        records = [_request(i) for i in range(n)]
        _produce_spread(kafka, kafka.topics.evaluation_requests, records)
        wanted = {h for h, _ in records}
        asked = _timestamps(kafka, kafka.topics.evaluation_requests, wanted)
        scored = _timestamps(kafka, kafka.topics.scores, wanted, timeout_s=60.0 * n)
        if set(scored) != wanted:
            raise RuntimeError(f"{len(wanted - set(scored))} of {n} requests not scored")
        span = max(scored.values()) - min(asked.values())
        return {"evaluators": evaluators, "requests": n, "span_s": round(span, 2),
                "per_request_s": round(span / n, 2),
                "scores_per_evaluator": _scorers(kafka, wanted), "assignment": assignment}
    finally:
        for service in services:
            service.stop()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """One evaluator, then two, on the same requests; write their spans and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=12)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    up = DevStack(DevSettings()).up(KafkaSettings())
    base = KafkaSettings(KAFKA_BOOTSTRAP_SERVERS=up.bootstrap_servers)
    with tempfile.TemporaryDirectory(prefix="speechstream-bench-fleet-") as tmp:
        root = Path(tmp)
        build_tiny_musicgen(root / "models" / "bench" / "tiny", seed=7, size="tiny")
        env = {"KAFKA_BOOTSTRAP_SERVERS": up.bootstrap_servers,
               "SPEECHSTREAM_TRUST_INSECURE": "true",
               "SPEECHSTREAM_SCORING_MODELS_ROOT": str(root / "models"),
               "SPEECHSTREAM_SCORING_N_SAMPLES": str(args.samples),
               "SPEECHSTREAM_SCORING_MAX_AUDIO_S": "4.0",
               "PYTHONPATH": os.getcwd()}
        cores = os.cpu_count() or 1
        split = {"OMP_NUM_THREADS": str(max(1, cores // 2))}
        ways = {
            "1 evaluator": _one_way(base, 1, args.requests, env, root / "logs"),
            "2 evaluators": _one_way(base, 2, args.requests, env, root / "logs"),
            "2 evaluators, cores split": _one_way(base, 2, args.requests, {**env, **split},
                                                  root / "logs"),
        }
    one = ways["1 evaluator"]["span_s"]
    result = {"machine": f"{platform.machine()}, {platform.system()}, {cores} cores",
              "samples": args.samples, "ways": ways,
              "speedup_two_vs_one": round(one / ways["2 evaluators"]["span_s"], 2),
              "speedup_two_split_vs_one": round(
                  one / ways["2 evaluators, cores split"]["span_s"], 2)}
    return write_results(result, args.out)


if __name__ == "__main__":
    main()
