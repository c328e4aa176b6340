"""Pure batch reduction: envelopes → staging rows, one row per key, order-insensitive."""

from __future__ import annotations

import base64
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
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
_NEVER = datetime.min.replace(tzinfo=UTC)


def pick(
    items: Iterable[T], key: Callable[[T], Hashable], order: Callable[[T], Any], *,
    lowest: bool = False,
) -> list[T]:
    """One item per ``key``: the one with the highest (or ``lowest``) ``order``.

    ``order`` must be total over items of one key (end it with the event id), so that the
    winner does not depend on the order of ``items``.
    """
    best: dict[Hashable, tuple[Any, T]] = {}
    for item in items:
        k, o = key(item), order(item)
        held = best.get(k)
        if held is None or (o < held[0] if lowest else o > held[0]):
            best[k] = (o, item)
    return [item for _, item in best.values()]


def status_order(
    rank: int, at: datetime | None, notes: str | None, event_id: str
) -> tuple[int, datetime, str, str]:
    """The total order of status updates: rank, then time, then notes, then event id.

    Strings compare by code point, as ``COLLATE "C"`` does in ``sinks.statements``.
    """
    return (rank, at or _NEVER, notes or "", event_id)


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

    def computed(item: tuple[ScoreComputed, Envelope]) -> tuple[datetime, str]:
        return (item[1].time, item[1].event_id)

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
    statuses = pick(statuses, by_event, by_event)
    rows["status_events"] = [
        (e.event_id, p.hash, p.status, p.scoring_version, p.evaluator, p.note, e.time)
        for p, e in statuses
    ]
    rows["submissions"] = submission_rows(
        pick(requests, lambda i: i[0].hash, by_event, lowest=True),
        pick(statuses, lambda i: i[0].hash,
             lambda i: status_order(RANK[i[0].status], i[1].time, i[0].note, i[1].event_id)),
    )
    # The first score computed wins (a later one for the same version is a duplicate).
    winners = pick(scores, lambda i: (i[0].hash, i[0].scoring_version), computed, lowest=True)
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


def submission_rows(
    requests: list[tuple[EvaluationRequested, Envelope]],
    statuses: list[tuple[EvaluationStatusChanged, Envelope]],
) -> list[tuple[Any, ...]]:
    """One staged ``submissions`` row per hash: its request's columns and its best status.

    Either half may be missing (``None`` columns): a status seen before its request creates a
    placeholder row that the request fills in later, so no status event is ever lost.
    """
    by_hash: dict[str, list[Any]] = {}
    for p, e in requests:
        by_hash[p.hash] = [
            p.hash, p.hotkey, p.uid, p.repo_namespace, p.repo_name, p.revision,
            p.config_template, p.competition_id, p.block, p.scoring_version, e.event_id, e.time,
            None, None, None, None,
        ]
    for p, e in statuses:
        row = by_hash.setdefault(p.hash, [p.hash, *([None] * 8), p.scoring_version, None, None,
                                          None, None, None, None])
        row[12:16] = [p.status, RANK[p.status], p.note, e.time]
    return [tuple(row) for row in by_hash.values()]
