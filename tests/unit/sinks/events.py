"""Envelope factories for the sink's tests: a small pipeline history with fixed ids and times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from schemas.envelope import Envelope, new_envelope
from schemas.events import (
    DeadLetter,
    EvaluationRequested,
    EvaluationStatusChanged,
    MinerRegistered,
    RejectionCode,
    SampleResult,
    ScoreComputed,
    SubmissionRejected,
)

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def hotkey(n: int) -> str:
    return f"{n:064x}"


def hash_of(n: int) -> str:
    return str(1_000_000 + n)


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def registered(n: int, uid: int, block: int) -> Envelope:
    payload = MinerRegistered(hotkey=hotkey(n), uid=uid, block=block, signature="a" * 128)
    return new_envelope(payload, key=hotkey(n), producer="test", event_id=f"reg-{n}-{block}",
                        time=_at(block))


def requested(n: int, block: int = 100) -> Envelope:
    payload = EvaluationRequested(
        hash=hash_of(n), hotkey=hotkey(n), uid=n, repo_namespace="ns", repo_name=f"model-{n}",
        block=block, source_event_id=f"sub-{n}",
    )
    return new_envelope(payload, key=hash_of(n), producer="test", event_id=f"req-{n}",
                        time=_at(n))


def status(n: int, value: str, seconds: float, note: str | None = None) -> Envelope:
    payload = EvaluationStatusChanged(hash=hash_of(n), status=value, note=note, evaluator="ev")
    return new_envelope(payload, key=hash_of(n), producer="test",
                        event_id=f"st-{n}-{value}-{seconds}-{note}", time=_at(seconds))


def scored(n: int, total: float | None, seconds: float, samples: int = 2) -> Envelope:
    failed = total is None
    payload = ScoreComputed(
        hash=hash_of(n), status="FAILED" if failed else "COMPLETED", total_score=total,
        reason="precheck failed" if failed else None, evaluator="ev",
        request_event_id=f"req-{n}", timings={"total_s": 1.5},
        samples=[] if failed else [
            SampleResult(index=i, text=f"text {i}", ce=0.5, wer=0.1, transcription="t",
                         score=total)
            for i in range(samples)
        ],
    )
    return new_envelope(payload, key=hash_of(n), producer="test",
                        event_id=f"score-{n}-{seconds}", time=_at(seconds))


def rejected(n: int) -> Envelope:
    payload = SubmissionRejected(
        code=RejectionCode.RATE_LIMITED, message="too soon", source_event_id=f"sub-x{n}",
        source_type="submission.published", hotkey=hotkey(n), hash=hash_of(900 + n),
        repo_namespace="ns", repo_name=f"late-{n}", block=5,
    )
    return new_envelope(payload, key=hotkey(n), producer="test", event_id=f"rej-{n}",
                        time=_at(n))


def dead(n: int) -> Envelope:
    payload = DeadLetter(raw_b64="bm90IGpzb24=", raw_size=8, topic="t", partition=0, offset=n,
                         error="not JSON", consumer="test")
    return new_envelope(payload, key=None, producer="test", event_id=f"dl-{n}", time=_at(n))


def history() -> list[Envelope]:
    """Miners 1-3 (uid 2 handed over from miner 2 to 4), three submissions, a rejection."""
    return [
        registered(1, 1, 10), registered(2, 2, 10), registered(3, 3, 10),
        registered(4, 2, 20),
        requested(1), requested(2), requested(3),
        status(1, "QUEUED", 1), status(2, "QUEUED", 2), status(3, "QUEUED", 3),
        status(1, "RUNNING", 10), status(2, "RUNNING", 11), status(3, "PRECHECK", 12),
        scored(1, 0.75, 20), scored(2, None, 21),
        rejected(1), dead(1),
    ]
