"""Validator epoch benchmark: one epoch's weights for 256 uids (SPEC §5), computed alone and
computed + published by the validator service (weights.computed and 256 minerboard.updated
on a real broker).

Run: ``.venv/bin/python -m bench.weights`` (starts the local stack if needed). Writes
``bench/results/weights.json``: the median and the slowest of the repetitions, in ms.
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import time
import uuid
from pathlib import Path

from prometheus_client import CollectorRegistry

from bench.report import write_results
from consumers.metrics import ValidatorMetrics
from consumers.settings import ValidatorSettings
from consumers.validator import Validator
from consumers.weights import Candidate, compute_weights
from devstack.stack import DevStack
from schemas import EvaluationRequested, MinerRegistered, ScoreComputed, new_envelope
from schemas.events import ChainBlock
from speechstream.kafka.admin import create_topics
from speechstream.settings import DevSettings, KafkaSettings

RESULTS = Path("bench/results/weights.json")


def candidates(n: int, seed: int = 0) -> list[Candidate]:
    """``n`` uids: most COMPLETED, some FAILED, QUEUED, without a submission or duplicates."""
    rng = random.Random(seed)
    out = []
    for uid in range(n):
        kind = rng.random()
        if kind < 0.05:
            out.append(Candidate(uid=uid, hotkey=f"hk{uid}"))
            continue
        status = "FAILED" if kind < 0.1 else "QUEUED" if kind < 0.15 else "COMPLETED"
        repo = f"ns/m{uid if kind > 0.2 else uid // 2}"  # a few repos twice: duplicates
        out.append(Candidate(
            uid=uid, hotkey=f"hk{uid}", hash=str(10**6 + uid), repo=repo,
            block=rng.randrange(1, 10_000), status=status,
            score=rng.random() if status == "COMPLETED" else None,
            content_hash=f"w{uid}",
        ))
    return out


def _ms(samples: list[float]) -> dict[str, float]:
    return {"median_ms": round(1000 * statistics.median(samples), 3),
            "max_ms": round(1000 * max(samples), 3), "runs": len(samples)}


def compute_only(n: int, runs: int) -> dict[str, float]:
    """``compute_weights`` alone, with a previous vector (the moving average included)."""
    pool = candidates(n)
    previous = {c.uid: 1 / n for c in pool}
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        compute_weights(pool, cutoff_block=10_000, previous=previous)
        times.append(time.perf_counter() - started)
    return _ms(times)


def service_epoch(kafka: KafkaSettings, n: int, runs: int) -> dict[str, float]:
    """The validator's ``run_epoch``: candidates from its ledger, the weights, and publishing
    the vector and ``n`` minerboard entries (flushed to the broker)."""
    settings = ValidatorSettings(validator_id=f"bench-{uuid.uuid4().hex[:6]}", epoch_blocks=100)
    validator = Validator(kafka, settings, metrics=ValidatorMetrics.create(CollectorRegistry()))
    validator.start()
    for c in candidates(n):
        hotkey = f"{c.uid:064x}"
        validator.ledger.apply(new_envelope(MinerRegistered(
            hotkey=hotkey, uid=c.uid, block=1, signature="cd" * 64), key=None, producer="b"))
        if c.hash is None:
            continue
        namespace, name = (c.repo or "ns/m").split("/")
        validator.ledger.apply(new_envelope(EvaluationRequested(
            hash=c.hash, hotkey=hotkey, uid=c.uid, repo_namespace=namespace, repo_name=name,
            block=c.block or 1, source_event_id=f"s{c.uid}"), key=c.hash, producer="b",
            event_id=f"r{c.hash}"))
        if c.status in ("COMPLETED", "FAILED"):
            validator.ledger.apply(new_envelope(ScoreComputed(
                hash=c.hash, status=c.status, total_score=c.score,
                reason=None if c.status == "COMPLETED" else "x", evaluator="b",
                request_event_id=f"r{c.hash}", content_hash=c.content_hash), key=c.hash,
                producer="b"))
    times = []
    try:
        for epoch in range(1, runs + 1):
            validator.ledger.apply(new_envelope(ChainBlock(block=10_000 + 100 * epoch), key=None,
                                               producer="b"))
            started = time.perf_counter()
            validator.run_epoch()
            times.append(time.perf_counter() - started)
    finally:
        validator.close()
    return _ms(times)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uids", type=int, default=256)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    up = DevStack(DevSettings()).up(KafkaSettings())
    kafka = KafkaSettings(KAFKA_BOOTSTRAP_SERVERS=up.bootstrap_servers,
                          SPEECHSTREAM_TOPIC_PREFIX=f"benchw{uuid.uuid4().hex[:6]}.")
    create_topics(kafka)
    result = {
        "machine": f"{platform.machine()}, {platform.system()}, 2 cores",
        "uids": args.uids,
        "compute_weights": compute_only(args.uids, args.runs),
        "validator_epoch": service_epoch(kafka, args.uids, min(args.runs, 20)),
    }
    return write_results(result, args.out)


if __name__ == "__main__":
    main()
