"""Pure batch reduction: envelopes → staging rows, one row per key, order-insensitive."""

from __future__ import annotations

import base64
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from psycopg.types.json import Jsonb

from schemas.envelope import Envelope
from schemas.events import (
    DeadLetter,
    EvaluationRequested,
    EvaluationStatusChanged,
    MinerRegistered,
    ScoreComputed,
    SubmissionRejected,
)

RANK: dict[str, int] = {"QUEUED": 0, "PRECHECK": 1, "RUNNING": 2, "COMPLETED": 3, "FAILED": 3}
"""Status ranks: a submission's status never moves to a lower rank."""

# Every table the sink writes, in the order a rebuild empties them.
TABLES: tuple[str, ...] = (
    "miners", "miner_uid_claims", "submissions", "status_events", "scores", "sample_results",
    "rejections", "dead_letters",
)

T = TypeVar("T")


def pick(items: Iterable[T], key: Callable[[T], Hashable], order: Callable[[T], Any]) -> list[T]:
    """One item per ``key``: the one with the highest ``order`` (ties must not exist)."""
    best: dict[Hashable, T] = {}
    for item in items:
        k = key(item)
        held = best.get(k)
        if held is None or order(item) > order(held):
            best[k] = item
    return list(best.values())


def status_order(rank: int, at: datetime | None, notes: str | None, event_id: str) -> tuple:
    """The total order of status updates: rank, then time, then notes, then event id."""
    return (rank, at.timestamp() if at else float("-inf"), notes or "", event_id)


@dataclass
class StagedBatch:
    """Staging rows per staging table, each reduced to one row per target key."""

    rows: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    events: int = 0

    def __getitem__(self, table: str) -> list[tuple[Any, ...]]:
        return self.rows.get(table, [])

    def counts(self) -> dict[str, int]:
        """Rows staged per table (tables with none left out)."""
        return {name: len(rows) for name, rows in self.rows.items() if rows}


def reduce_batch(envelopes: Sequence[Envelope]) -> StagedBatch:
    """Split a batch into staging rows and reduce each to one row per key (pure: no database).

    Any order of the same envelopes gives the same rows (as sets), so the merges that apply
    them commute within and across batches.
    """
    miners: list[tuple[MinerRegistered, Envelope]] = []
    requests: list[tuple[EvaluationRequested, Envelope]] = []
    statuses: list[tuple[EvaluationStatusChanged, Envelope]] = []
    scores: list[tuple[ScoreComputed, Envelope]] = []
    rejections: list[tuple[SubmissionRejected, Envelope]] = []
    letters: list[tuple[DeadLetter, Envelope]] = []
    for env in envelopes:
        p = env.payload
        if isinstance(p, MinerRegistered):
            miners.append((p, env))
        elif isinstance(p, EvaluationRequested):
            requests.append((p, env))
        elif isinstance(p, EvaluationStatusChanged):
            statuses.append((p, env))
        elif isinstance(p, ScoreComputed):
            scores.append((p, env))
        elif isinstance(p, SubmissionRejected):
            rejections.append((p, env))
        elif isinstance(p, DeadLetter):
            letters.append((p, env))

    def by_event(item: tuple[Any, Envelope]) -> str:
        return item[1].event_id

    def registration(item: tuple[MinerRegistered, Envelope]) -> tuple[int, str]:
        return (item[0].block, item[1].event_id)

    def earliest(item: tuple[ScoreComputed, Envelope]) -> tuple[float, str]:
        # The first score computed wins; negated so that ``pick`` keeps the highest.
        return (-item[1].time.timestamp(), _invert(item[1].event_id))

    staged = StagedBatch(events=len(envelopes))
    rows = staged.rows
    rows["miners"] = [
        (p.hotkey, p.uid, p.coldkey, p.block, e.event_id, e.time)
        for p, e in pick(miners, lambda i: i[0].hotkey, registration)
    ]
    rows["claims"] = [
        (p.uid, p.hotkey, p.block, e.event_id)
        for p, e in pick(miners, lambda i: i[0].uid, registration)
    ]
    rows["requests"] = [
        (p.hash, p.hotkey, p.uid, p.repo_namespace, p.repo_name, p.revision, p.config_template,
         p.competition_id, p.block, p.scoring_version, e.event_id, e.time)
        for p, e in pick(requests, lambda i: i[0].hash, lambda i: _invert(i[1].event_id))
    ]
    statuses = pick(statuses, by_event, by_event)
    rows["status_events"] = [
        (e.event_id, p.hash, p.status, p.scoring_version, p.evaluator, p.note, e.time)
        for p, e in statuses
    ]
    rows["statuses"] = [
        (p.hash, p.scoring_version, p.status, RANK[p.status], p.note, e.time)
        for p, e in pick(
            statuses, lambda i: i[0].hash,
            lambda i: status_order(RANK[i[0].status], i[1].time, i[0].note, i[1].event_id),
        )
    ]
    winners = pick(scores, lambda i: (i[0].hash, i[0].scoring_version), earliest)
    rows["scores"] = [
        (p.hash, p.scoring_version, p.status, p.total_score, p.reason, p.revision, p.evaluator,
         Jsonb(p.timings), e.event_id, p.request_event_id, e.time)
        for p, e in winners
    ]
    rows["sample_results"] = [
        (p.hash, p.scoring_version, s.index, s.text, s.speaker, s.ce, s.wer, s.transcription,
         s.score, s.error)
        for p, _ in winners
        for s in pick(p.samples, lambda s: s.index, lambda s: s.model_dump_json())
    ]
    rows["rejections"] = [
        (e.event_id, p.code.value, p.message, p.source_event_id, p.source_type, p.hotkey, p.uid,
         p.hash, p.repo_namespace, p.repo_name, p.block, e.time)
        for p, e in pick(rejections, by_event, by_event)
    ]
    rows["dead_letters"] = [
        (e.event_id, p.topic, p.partition, p.offset, p.error, p.consumer,
         base64.b64decode(p.raw_b64), e.time)
        for p, e in pick(letters, by_event, by_event)
    ]
    return staged


def _invert(text: str) -> tuple[int, ...]:
    """An order key under which the lowest string comes out highest."""
    return tuple(-ord(c) for c in text) + (0,)
