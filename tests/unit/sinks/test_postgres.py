"""The batch writer's pure parts: staging rows, status reduction, merge choice, direct COPY."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from schemas import EvaluationRequested, EvaluationStatusChanged, new_envelope
from schemas.envelope import Envelope
from sinks.postgres import (
    _DIRECT,
    _MERGES,
    _ORDER,
    _REQUESTS_UNIQUE,
    _STAGING,
    _statements,
    _statuses,
    rows_of,
)

HK = "ab" * 32
T = datetime(2024, 1, 1, tzinfo=UTC)


def _request(h: str) -> Envelope:
    return new_envelope(
        EvaluationRequested(hash=h, hotkey=HK, uid=1, repo_namespace="ns", repo_name="m",
                            block=1, source_event_id=f"s{h}"),
        key=h, producer="t", time=T,
    )


def _status(h: str, status: str, note: str | None = None) -> Envelope:
    return new_envelope(EvaluationStatusChanged(hash=h, status=status, note=note), key=h,
                        producer="t", time=T)


def _by_hash(rows: list[tuple]) -> dict[str, tuple]:
    return {row[0]: row for row in rows}


def test_rows_of_splits_by_table() -> None:
    rows = rows_of([_request("1"), _status("1", "QUEUED"), _status("2", "RUNNING")])
    assert [len(rows[name]) for name in ("requests", "status_events")] == [1, 2]
    assert all(len(row) == len(_STAGING[name]) for name, rs in rows.items() for row in rs)


def test_statuses_keep_the_highest_rank_per_hash() -> None:
    rows = rows_of([_status("1", "QUEUED"), _status("1", "RUNNING", "r"),
                    _status("1", "PRECHECK"), _status("2", "PRECHECK", "p"),
                    _status("2", "QUEUED")])
    kept = _by_hash(_statuses(rows["status_events"], rows["requests"]))
    assert kept == {"1": ("1", "v1", "RUNNING", 2, "r", T), "2": ("2", "v1", "PRECHECK", 1, "p", T)}


def test_queued_status_of_a_request_in_the_batch_is_dropped() -> None:
    rows = rows_of([_status("1", "QUEUED"), _request("1"), _status("2", "QUEUED"),
                    _request("3"), _status("3", "RUNNING")])
    kept = _by_hash(_statuses(rows["status_events"], rows["requests"]))
    # 1: the request creates the row, QUEUED cannot move it; 2: no request, QUEUED creates it;
    # 3: RUNNING moves the row the request creates.
    assert set(kept) == {"2", "3"}
    assert kept["2"][3] == 0 and kept["3"][3] == 2


def test_requests_merge_sorts_only_for_duplicate_hashes() -> None:
    unique = rows_of([_request("1"), _request("2")])["requests"]
    assert _statements("requests", unique) == [_REQUESTS_UNIQUE.encode()]
    twice = rows_of([_request("1"), _request("1")])["requests"]
    assert _statements("requests", twice) == [_MERGES["requests"].encode()]
    assert "DISTINCT ON (hash)" in _MERGES["requests"]
    assert "DISTINCT" not in _REQUESTS_UNIQUE and "ORDER BY" not in _REQUESTS_UNIQUE


def test_statuses_merge_runs_only_the_statements_it_needs() -> None:
    queued, moved = (s.encode() for s in _MERGES["statuses"].split(";"))
    assert b"DO NOTHING" in queued and b"DO UPDATE" in moved
    row = ("1", "v1", "QUEUED", 0, None, T)
    assert _statements("statuses", [row]) == [queued]
    assert _statements("statuses", [row[:3] + (2,) + row[4:]]) == [moved]
    assert _statements("statuses", [row, ("2", *row[1:3], 1, *row[4:])]) == [queued, moved]


def test_every_staging_table_has_a_merge_in_order() -> None:
    assert set(_ORDER) == set(_STAGING) == set(_MERGES)
    assert _ORDER.index("requests") < _ORDER.index("statuses")


def _insert_pairs(merge: str) -> dict[str, str]:
    """``target column → SELECT expression`` of an ``INSERT (...) SELECT ...`` statement."""
    flat = " ".join(merge.split())
    match = re.search(r"INSERT INTO \w+ \((.*?)\) SELECT (?:DISTINCT ON \(\w+\) )?(.*?) FROM",
                      flat)
    assert match, merge
    columns = [c.strip().strip('"') for c in match.group(1).split(",")]
    expressions = [e.strip() for e in match.group(2).split(",")]
    assert len(columns) == len(expressions)
    return dict(zip(columns, expressions, strict=True))


def test_direct_copy_writes_what_the_merge_inserts() -> None:
    """COPY straight into the target must insert each row as the merge's SELECT would."""
    for name, (target, columns, constants) in _DIRECT.items():
        merge = _MERGES[name].split(";")[0]
        assert f"INSERT INTO {target} " in merge
        pairs = _insert_pairs(merge)
        assert set(pairs) == set(columns)
        staged = _STAGING[name]
        assert columns[: len(staged)] == staged
        for col in staged:
            assert pairs[col] == col
        for col, value in zip(columns[len(staged):], constants, strict=True):
            assert pairs[col] == (f"'{value}'" if isinstance(value, str) else str(value))
