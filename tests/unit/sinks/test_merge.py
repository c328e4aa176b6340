"""The sink's pure batch reduction: one row per key, whatever the order of the batch."""

from __future__ import annotations

import random

from sinks.merge import RANK, pick, reduce_batch, status_order
from tests.unit.sinks.events import (
    hash_of,
    history,
    hotkey,
    registered,
    requested,
    scored,
    status,
)


def _as_sets(envelopes: list) -> dict[str, set]:
    staged = reduce_batch(envelopes)
    return {name: {repr(r) for r in rows} for name, rows in staged.rows.items()}


def test_reduction_is_order_insensitive() -> None:
    events = history() + [status(1, "RUNNING", 10, note="retry"), scored(1, 0.5, 30)]
    expected = _as_sets(events)
    rng = random.Random(7)
    for _ in range(20):
        shuffled = events[:]
        rng.shuffle(shuffled)
        assert _as_sets(shuffled) == expected


def test_highest_rank_wins_per_hash() -> None:
    staged = reduce_batch([status(1, "RUNNING", 5), status(1, "QUEUED", 9),
                           status(1, "PRECHECK", 7)])
    assert [(r[0], r[12], r[13]) for r in staged["submissions"]] == [
        (hash_of(1), "RUNNING", 2)
    ]
    assert len(staged["status_events"]) == 3


def test_equal_rank_ties_go_to_the_later_time() -> None:
    staged = reduce_batch([status(1, "RUNNING", 9), status(1, "RUNNING", 5)])
    assert staged["submissions"][0][15].second == 9


def test_earliest_score_wins_with_its_samples() -> None:
    staged = reduce_batch([scored(1, 0.9, 50, samples=3), scored(1, 0.2, 40, samples=2)])
    assert [r[3] for r in staged["scores"]] == [0.2]
    assert len(staged["sample_results"]) == 2


def test_latest_registration_per_hotkey_and_per_uid() -> None:
    staged = reduce_batch([registered(2, 2, 10), registered(4, 2, 20), registered(2, 5, 5)])
    assert sorted((r[0], r[1]) for r in staged["miners"]) == [(hotkey(2), 2), (hotkey(4), 2)]
    assert sorted((r[0], r[1]) for r in staged["claims"]) == [(2, hotkey(4)), (5, hotkey(2))]


def test_duplicate_events_keep_the_first_occurrence() -> None:
    first, again = requested(1), requested(1).model_copy(update={"time": scored(1, 0, 99).time})
    staged = reduce_batch([first, again])
    assert [r[11] for r in staged["submissions"]] == [first.time]


def test_request_and_status_share_one_row_per_hash() -> None:
    staged = reduce_batch([status(1, "RUNNING", 5), requested(1), status(2, "QUEUED", 1)])
    rows = {r[0]: r for r in staged["submissions"]}
    assert rows[hash_of(1)][1:3] == (hotkey(1), 1)
    assert rows[hash_of(1)][10] == "req-1" and rows[hash_of(1)][12] == "RUNNING"
    # A status before its request: a placeholder with the status half only.
    assert rows[hash_of(2)][1:9] == (None,) * 8
    assert rows[hash_of(2)][9:14] == ("v1", None, None, "QUEUED", 0)


def test_lowest_request_event_id_wins() -> None:
    a = requested(1)
    b = requested(1).model_copy(update={"event_id": "req-0"})
    for batch in ([a, b], [b, a]):
        assert [r[10] for r in reduce_batch(batch)["submissions"]] == ["req-0"]


def test_ranks_and_status_order() -> None:
    assert RANK["QUEUED"] < RANK["PRECHECK"] < RANK["RUNNING"] < RANK["COMPLETED"]
    assert RANK["COMPLETED"] == RANK["FAILED"]
    assert status_order(1, None, None, "a") < status_order(1, history()[0].time, None, "a")
    assert pick([3, 1, 2], key=lambda _: 0, order=lambda x: x) == [3]
    assert pick([3, 1, 2], key=lambda _: 0, order=lambda x: x, lowest=True) == [1]


def test_dead_letter_raw_is_decoded() -> None:
    staged = reduce_batch(history())
    assert staged["dead_letters"][0][6] == b"not json"
