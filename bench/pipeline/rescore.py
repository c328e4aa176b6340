"""Re-scoring 10,000 requests: how fast they are re-emitted, and how long a new submission waits
behind them.

Run: ``.venv/bin/python -m bench.pipeline.rescore`` (starts the local stack if needed). Writes
``bench/results/rescore.json``. In one run, on a fresh topic prefix:

1. ``--requests`` accepted evaluation requests (v2) are published to ``evaluation.requests``
   and the evaluators' group is committed past them (scored long ago).
2. **Re-emit**: the re-score of them all for v1, through the library the command runs
   (``producers.rescore``): reading the log (``plan``) and publishing on the lane, timed apart;
   then the same re-score again (it queues nothing).
3. **Wait of a new submission**: one evaluator (``tests.scorers:DeterministicScorer``: no
   model, so an evaluation is the evaluator's own work: three transactions) takes new requests
   published one a second, first with the re-score lane empty, then with the 10,000 re-scores
   queued behind them; for each, the time from its request record to its score record. The
   evaluator's re-score rate in the same run gives what the wait would be without lanes
   (first in, first out: the backlog ahead divided by that rate).

A new request is published straight to ``evaluation.requests``: the intake hops before it are
``bench.pipeline.latency``'s.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from bench.kafka import count, produce
from bench.pipeline.latency import _timestamps
from bench.report import write_results
from devstack.processes import ServiceProcess
from devstack.stack import DevStack
from producers import rescore
from schemas.codec import encode
from schemas.envelope import new_envelope
from schemas.events import EvaluationRequested
from speechstream.kafka.admin import create_topics
from speechstream.settings import DevSettings, KafkaSettings

RESULTS = Path("bench/results/rescore.json")
SCORER = "tests.scorers:DeterministicScorer"


def _request(i: int, tag: str) -> tuple[str, bytes]:
    hash_ = str(10**15 + i) if tag == "old" else str(2 * 10**15 + i)
    request = EvaluationRequested(
        hash=hash_, hotkey=f"{i % 256:02x}" * 32, uid=i % 256, repo_namespace=f"{tag}{i}",
        repo_name="tts", block=1000 + i, scoring_version="v2", source_event_id=f"{tag}-{i}",
    )
    return hash_, encode(new_envelope(request, key=hash_, producer="bench"))


def _commit_to_end(kafka: KafkaSettings, group: str, topic: str) -> None:
    """Commit ``group``'s offsets at the end of every partition of ``topic``."""
    consumer = Consumer(kafka.to_librdkafka(**{"group.id": group, "enable.auto.commit": False}))
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = [TopicPartition(topic, p, consumer.get_watermark_offsets(
            TopicPartition(topic, p), timeout=10)[1]) for p in partitions]
        consumer.commit(offsets=ends, asynchronous=False)
    finally:
        consumer.close()


def _rescored(kafka: KafkaSettings) -> int:
    """Committed v1 scores (the re-scores) so far: read, since a transactional topic's offsets
    count its commit markers too."""
    ledger = rescore.read_ledger(kafka, [kafka.topics.scores],
                                 name=f"bench-rescore-{uuid.uuid4().hex[:6]}")
    return sum(version == "v1" for _, version in ledger.scores)


def _new_submission_waits(kafka: KafkaSettings, n: int, first: int, evaluator: ServiceProcess
                          ) -> list[float]:
    """Publish ``n`` new requests, one a second; each one's wait (s) from its request record to
    its score record."""
    records = [_request(first + i, "new") for i in range(n)]
    for hash_, value in records:
        produce(kafka, kafka.topics.evaluation_requests, [(hash_, value)])
        evaluator.check()
        time.sleep(1.0)
    wanted = {h for h, _ in records}
    asked = _timestamps(kafka, kafka.topics.evaluation_requests, wanted)
    scored = _timestamps(kafka, kafka.topics.scores, wanted, timeout_s=120)
    missing = wanted - set(scored)
    if missing:
        raise RuntimeError(f"{len(missing)} new requests not scored within 120 s")
    return [scored[h] - asked[h] for h, _ in records]


def _summary(waits: list[float]) -> dict[str, float]:
    return {"n": len(waits), "p50_s": round(statistics.median(waits), 3),
            "max_s": round(max(waits), 3)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--new", type=int, default=10, help="new submissions per phase")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    up = DevStack(DevSettings()).up(KafkaSettings())
    prefix = f"rsc{uuid.uuid4().hex[:6]}."
    kafka = KafkaSettings(KAFKA_BOOTSTRAP_SERVERS=up.bootstrap_servers,
                          SPEECHSTREAM_TOPIC_PREFIX=prefix)
    create_topics(kafka)
    t = kafka.topics
    group = f"{prefix}evaluators"
    produce(kafka, t.evaluation_requests, (_request(i, "old") for i in range(args.requests)))
    _commit_to_end(kafka, group, t.evaluation_requests)
    result: dict[str, Any] = {"machine": f"{platform.machine()}, {platform.system()}, 2 cores",
                              "requests": args.requests}

    # Re-emit: read the log, publish on the lane; then again (nothing to queue).
    started = time.perf_counter()
    planned = rescore.plan(kafka, "v1", rescore.Selection(all=True))
    planned_s = time.perf_counter() - started
    sent = rescore.publish(kafka, planned.queued)
    total_s = time.perf_counter() - started
    again_started = time.perf_counter()
    again = rescore.plan(kafka, "v1", rescore.Selection(all=True))
    result["re_emit"] = {
        "queued": sent, "on_lane": count(kafka, t.rescores),
        "read_log_s": round(planned_s, 3), "publish_s": round(total_s - planned_s, 3),
        "total_s": round(total_s, 3), "re_emitted_per_s": round(sent / total_s),
        "second_run_queued": len(again.queued),
        "second_run_s": round(time.perf_counter() - again_started, 3),
    }
    print(result["re_emit"], flush=True)

    # The waits: first behind the re-scores, then (the rest of them skipped) with the lane empty.
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
           "SPEECHSTREAM_TOPIC_PREFIX": prefix, "SPEECHSTREAM_EVALUATOR_GROUP_ID": group,
           "PYTHONPATH": str(Path.cwd())}
    logs = Path(f"/tmp/{prefix}logs")
    evaluator = ServiceProcess("evaluator", ["evaluator", "run", "--scorer", SCORER],
                               logs / "evaluator.log", env).start()
    try:
        # Let it start on the backlog, then measure its re-score rate over a window.
        deadline = time.monotonic() + 120
        while _rescored(kafka) < 50:
            evaluator.check()
            if time.monotonic() > deadline:
                raise RuntimeError("the evaluator scored nothing in 120 s")
            time.sleep(0.5)
        before, t0 = _rescored(kafka), time.monotonic()
        time.sleep(10)
        rate = (_rescored(kafka) - before) / (time.monotonic() - t0)
        behind = _new_submission_waits(kafka, args.new, 0, evaluator)
        backlog = args.requests - _rescored(kafka)
    finally:
        evaluator.stop()
    # An evaluator of a group committed past everything so far: the new requests meet an
    # empty lane.
    group = f"{prefix}evaluators-empty-lane"
    for topic in (t.evaluation_requests, t.rescores):
        _commit_to_end(kafka, group, topic)
    env["SPEECHSTREAM_EVALUATOR_GROUP_ID"] = group
    evaluator = ServiceProcess("evaluator", ["evaluator", "run", "--scorer", SCORER],
                               logs / "evaluator-2.log", env).start()
    try:
        time.sleep(5)
        empty = _new_submission_waits(kafka, args.new, args.new, evaluator)
    finally:
        evaluator.stop()
    result["new_submission_wait"] = {
        "lane_empty": _summary(empty),
        "behind_rescores": _summary(behind),
        "ratio_p50_behind_vs_empty": round(statistics.median(behind)
                                           / statistics.median(empty), 2),
        "rescores_per_s": round(rate, 1),
        "backlog_left_at_end": backlog,
        "fifo_wait_estimate_s": round(backlog / rate, 1) if rate else None,
    }
    return write_results(result, args.out)


if __name__ == "__main__":
    main()
