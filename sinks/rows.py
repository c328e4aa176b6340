"""A batch of envelopes as staging rows per feed (pure: no database)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from schemas.envelope import Envelope
from schemas.events import EvaluationCancelled, EvaluationStatusChanged, ScoreComputed
from schemas.fields import STATUS_RANK
from sinks.tables import FEEDS, REQUESTS_FEED, STATUS_EVENTS_FEED, STATUSES_FEED, Row

Extract = Callable[[Envelope, list[Row]], None]
_EXTRACTORS: dict[type, list[tuple[str, Extract]]] = {}
_POSITIONED: dict[type, list[tuple[str, Extract]]] = {}
"""Feeds whose rows end with the record's offset (appended here)."""
for _feed in FEEDS:
    if _feed.event is not None:
        into = _POSITIONED if _feed.positioned else _EXTRACTORS
        into.setdefault(_feed.event, []).append((_feed.name, _feed.extractor()))

_FIRST_COUNTS: dict[type, Callable[[Any], tuple[str, ...]]] = {
    ScoreComputed: lambda p: (p.hash, p.scoring_version),
    EvaluationCancelled: lambda p: (p.request_event_id,),
}
"""Events of which the first in log order counts (the ledger's rule: a score of
(hash, version), a request's withdrawal): a batch's later ones are dropped here, a later
batch's by the merge (the key is taken)."""

_EVENT_HASH = STATUS_EVENTS_FEED.position("hash")
_EVENT_RESCORE = STATUS_EVENTS_FEED.position("rescore_of")
_EVENT_STATUS = STATUS_EVENTS_FEED.position("status")
_REQUEST_HASH = REQUESTS_FEED.position("hash")
# A status row, in STATUSES_FEED's column order, from a status event's row and its rank
# (tests/unit/sinks pins the two together).
_HASH, _VERSION, _STATUS, _NOTE, _TIME = (
    STATUS_EVENTS_FEED.position(c) for c in ("hash", "scoring_version", "status", "note", "time")
)

def rows_of(envelopes: Sequence[Envelope],
            offsets: Sequence[int] | None = None) -> dict[str, list[Row]]:
    """Staging rows per feed, in each feed's column order, the derived statuses included.
    ``offsets`` are the records' offsets in their partitions (same positions as
    ``envelopes``; None: unknown, the positioned feeds' offsets are NULL)."""
    rows: dict[str, list[Row]] = {feed.name: [] for feed in FEEDS}
    seen: set[tuple[type, tuple[str, ...]]] = set()
    for env in envelopes:
        kind = type(env.payload)
        if kind is EvaluationStatusChanged and env.payload.status == "QUEUED":
            continue  # the request is the QUEUED (an older log's status event says no more)
        first = _FIRST_COUNTS.get(kind)
        if first is not None:
            key = (kind, first(env.payload))
            if key in seen:
                continue
            seen.add(key)
        for name, extract in _EXTRACTORS.get(kind, ()):
            extract(env, rows[name])
    if _POSITIONED:
        for i, env in enumerate(envelopes):
            for name, extract in _POSITIONED.get(type(env.payload), ()):
                out: list[Row] = []
                extract(env, out)
                offset = None if offsets is None else offsets[i]
                rows[name].extend((*row, offset) for row in out)
    rows[STATUSES_FEED.name] = reduce_statuses(
        rows[STATUS_EVENTS_FEED.name], rows[REQUESTS_FEED.name]
    )
    return rows


def reduce_statuses(status_events: Sequence[Row], requests: Sequence[Row]) -> list[Row]:
    """The status rows the submissions merge needs: the highest rank per hash (ties: the first
    seen), and no lowest-rank (QUEUED) status whose hash has a request in the same batch: that
    request creates the row, and the lowest rank never moves an existing one. A re-score's
    statuses are left out: they never move the submission's row."""
    best: dict[str, Row] = {}
    for row in status_events:
        if row[_EVENT_RESCORE] is not None:
            continue
        kept = best.get(row[_EVENT_HASH])
        if kept is None or STATUS_RANK[kept[_EVENT_STATUS]] < STATUS_RANK[row[_EVENT_STATUS]]:
            best[row[_EVENT_HASH]] = row
    lowest = STATUSES_FEED.merge.lowest  # type: ignore[union-attr]  # an Advance
    for row in requests:
        kept = best.get(row[_REQUEST_HASH])
        if kept is not None and STATUS_RANK[kept[_EVENT_STATUS]] == lowest:
            del best[row[_REQUEST_HASH]]
    return [(row[_HASH], row[_VERSION], row[_STATUS], STATUS_RANK[row[_STATUS]], row[_NOTE],
             row[_TIME]) for row in best.values()]
