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
_EVENT_STATUS = STATUS_EVENTS_FEED.position("status")
_REQUEST_HASH = REQUESTS_FEED.position("hash")
# Where each column of a status row comes from in a status event's row (None: the rank).
_STATUS_PICK = tuple(
    None if s.path == "rank" else STATUS_EVENTS_FEED.position(s.path)
    for s in STATUSES_FEED.sources
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
    request creates the row, and the lowest rank never moves an existing one."""
    best: dict[str, tuple[int, Row]] = {}
    for row in status_events:
        rank = STATUS_RANK[row[_EVENT_STATUS]]
        kept = best.get(row[_EVENT_HASH])
        if kept is None or kept[0] < rank:
            best[row[_EVENT_HASH]] = (rank, row)
    lowest = STATUSES_FEED.merge.lowest  # type: ignore[union-attr]  # an Advance
    for row in requests:
        kept = best.get(row[_REQUEST_HASH])
        if kept is not None and kept[0] == lowest:
            del best[row[_REQUEST_HASH]]
    return [
        tuple(rank if i is None else row[i] for i in _STATUS_PICK)
        for rank, row in best.values()
    ]
