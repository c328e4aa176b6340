"""A batch of envelopes as staging rows per feed (pure: no database)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from schemas.envelope import Envelope
from schemas.events import STATUS_RANK
from sinks.tables import FEEDS, REQUESTS_FEED, STATUS_EVENTS_FEED, STATUSES_FEED, Row

_EXTRACTORS: dict[type, list[tuple[str, Callable[[Envelope, list[Row]], None]]]] = {}
for _feed in FEEDS:
    if _feed.event is not None:
        _EXTRACTORS.setdefault(_feed.event, []).append((_feed.name, _feed.extractor()))

_EVENT_HASH = STATUS_EVENTS_FEED.position("hash")
_EVENT_RESCORE = STATUS_EVENTS_FEED.position("rescore_of")
_EVENT_STATUS = STATUS_EVENTS_FEED.position("status")
_REQUEST_HASH = REQUESTS_FEED.position("hash")
# A status row, in STATUSES_FEED's column order, from a status event's row and its rank
# (tests/unit/sinks pins the two together).
_HASH, _VERSION, _STATUS, _NOTE, _TIME = (
    STATUS_EVENTS_FEED.position(c) for c in ("hash", "scoring_version", "status", "note", "time")
)

def rows_of(envelopes: Sequence[Envelope]) -> dict[str, list[Row]]:
    """Staging rows per feed, in each feed's column order, the derived statuses included."""
    rows: dict[str, list[Row]] = {feed.name: [] for feed in FEEDS}
    for env in envelopes:
        for name, extract in _EXTRACTORS.get(type(env.payload), ()):
            extract(env, rows[name])
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
