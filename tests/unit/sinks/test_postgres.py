"""The batch writer's pure parts: the table descriptions, staging rows, status reduction, and
the SQL derived from the descriptions (merge choice, straight COPY)."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime

from psycopg.types.json import Jsonb

from schemas import (
    DeadLetter,
    EvaluationRequested,
    EvaluationStatusChanged,
    SampleResult,
    ScoreComputed,
    SubmissionRejected,
    new_envelope,
)
from schemas.envelope import Envelope
from schemas.events import EvaluationCancelled
from schemas.fields import RejectionCode
from sinks import statements
from sinks.rows import reduce_statuses, rows_of
from sinks.tables import (
    FEEDS,
    REQUESTS_FEED,
    STATUS_EVENTS_FEED,
    STATUSES_FEED,
    TABLES,
    Advance,
    FillOnce,
    InsertNew,
    KeepLatest,
)

HK = "ab" * 32
T = datetime(2024, 1, 1, tzinfo=UTC)
BY_NAME = {feed.name: feed for feed in FEEDS}


def _request(h: str, source: str | None = None) -> Envelope:
    return new_envelope(
        EvaluationRequested(hash=h, hotkey=HK, uid=1, repo_namespace="ns", repo_name="m",
                            block=1, source_event_id=source or f"s{h}"),
        key=h, producer="t", time=T,
    )


def _status(h: str, status: str, note: str | None = None) -> Envelope:
    return new_envelope(EvaluationStatusChanged(hash=h, status=status, note=note), key=h,
                        producer="t", time=T)


def _by_hash(rows: list[tuple]) -> dict[str, tuple]:
    return {row[STATUSES_FEED.position("hash")]: row for row in rows}


def _sql(feed_name: str, rows: list[tuple]) -> list[str]:
    feed = BY_NAME[feed_name]
    return [s.as_string(None) for s in statements.merges(feed, statements.variant(feed, rows))]


def test_every_feed_writes_columns_its_table_has_and_stages_the_key() -> None:
    for feed in FEEDS:
        names = {c.name for c in feed.table.columns}
        assert set(feed.columns) <= names and set(feed.constants) <= names, feed.name
        assert set(feed.table.key) <= set(feed.columns), feed.name
        assert len(set(feed.columns)) == len(feed.columns), feed.name
    assert {feed.table for feed in FEEDS} == set(TABLES)
    names = [feed.name for feed in FEEDS]
    assert names.index("requests") < names.index("statuses")  # see reduce_statuses


def test_rows_of_splits_by_feed_in_column_order() -> None:
    rows = rows_of([_request("1"), _status("1", "QUEUED"), _status("2", "RUNNING")])
    # The QUEUED status event says nothing the request does not: dropped (sinks.rows).
    assert [len(rows[name]) for name in ("requests", "status_events", "statuses")] == [1, 1, 1]
    assert all(len(row) == len(BY_NAME[name].columns) for name, rs in rows.items() for row in rs)
    (request,) = rows["requests"]
    assert request[REQUESTS_FEED.position("hash")] == "1"
    assert request[REQUESTS_FEED.position("requested_at")] == T


def test_a_request_is_its_submissions_queued_status_row() -> None:
    request = _request("1")
    (queued,) = rows_of([request])["queued"]
    row = dict(zip(BY_NAME["queued"].columns, queued, strict=True))
    assert row == {"hash": "1", "scoring_version": request.payload.scoring_version,
                   "event_id": request.event_id, "time": T}
    assert BY_NAME["queued"].constants == {"status": "QUEUED"}
    assert BY_NAME["queued"].table.name == "status_events"


def test_rows_convert_and_fan_out_by_the_description() -> None:
    score = ScoreComputed(hash="9", status="COMPLETED", total_score=0.5, evaluator="e",
                          request_event_id="r", timings={"a": 1.0}, samples=[
                              SampleResult(index=i, text=f"t{i}", ce=1.0) for i in range(3)])
    rejection = SubmissionRejected(code=RejectionCode.RATE_LIMITED, message="m",
                                   source_event_id="s", source_type="submission.published")
    letter = DeadLetter(raw_b64=base64.b64encode(b"\x00raw").decode(), raw_size=4, topic="t",
                        error="not JSON", consumer="c")
    rows = rows_of([new_envelope(e, key=None, producer="t", time=T)
                    for e in (score, rejection, letter)])
    samples = rows["sample_results"]
    feed = BY_NAME["sample_results"]
    assert [r[feed.position("index")] for r in samples] == [0, 1, 2]
    assert {r[feed.position("hash")] for r in samples} == {"9"}
    (scored,) = rows["scores"]
    timings = scored[BY_NAME["scores"].position("timings")]
    assert isinstance(timings, Jsonb) and timings.obj == {"a": 1.0}
    (rejected,) = rows["rejections"]
    code = rejected[BY_NAME["rejections"].position("code")]
    assert code == "RATE_LIMITED" and type(code) is str
    (dead,) = rows["dead_letters"]
    assert dead[BY_NAME["dead_letters"].position("raw")] == b"\x00raw"


def test_a_withdrawal_is_one_row_keyed_by_the_request_it_withdraws() -> None:
    cancelled = EvaluationCancelled(
        hash="9", request_event_id="req-9", hotkey=HK, uid=3, block=200,
        code=RejectionCode.DUPLICATE_REPO, reason="duplicate of ns/m submitted earlier at "
        "block 100 (hash 8)", displaced_by="sub-8", displaced_by_hash="8",
    )
    rows = rows_of([new_envelope(cancelled, key="9", producer="t", event_id="c-1", time=T)])
    feed = BY_NAME["withdrawals"]
    assert feed.table.key == ("request_event_id",) and isinstance(feed.merge, InsertNew)
    (row,) = rows["withdrawals"]
    got = {c: row[feed.position(c)] for c in feed.columns}
    assert got == {
        "request_event_id": "req-9", "hash": "9", "hotkey": HK, "uid": 3, "block": 200,
        "code": "DUPLICATE_REPO", "reason": cancelled.reason, "displaced_by": "sub-8",
        "displaced_by_hash": "8", "event_id": "c-1", "withdrawn_at": T,
    }
    assert type(got["code"]) is str


def test_statuses_keep_the_highest_rank_per_hash() -> None:
    rows = rows_of([_status("1", "QUEUED"), _status("1", "RUNNING", "r"),
                    _status("1", "PRECHECK"), _status("2", "PRECHECK", "p"),
                    _status("2", "QUEUED")])
    kept = _by_hash(reduce_statuses(rows["status_events"], rows["requests"]))
    assert kept == {"1": ("1", "v2", "RUNNING", 2, "r", T), "2": ("2", "v2", "PRECHECK", 1, "p", T)}
    assert STATUSES_FEED.columns == (
        "hash", "scoring_version", "status", "status_rank", "notes", "status_at")


def test_a_queued_status_event_is_dropped() -> None:
    rows = rows_of([_status("1", "QUEUED"), _request("1"), _status("2", "QUEUED"),
                    _request("3"), _status("3", "RUNNING")])
    kept = _by_hash(rows["statuses"])
    # 1: the request creates the row (and its one QUEUED status row); 2: a QUEUED status event
    # (an older log's) creates nothing, as in the ledger; 3: RUNNING moves the request's row.
    assert set(kept) == {"3"}
    rank = STATUSES_FEED.position("status_rank")
    assert kept["3"][rank] == 2
    assert {r[STATUS_EVENTS_FEED.position("status")] for r in rows["status_events"]} == {
        "RUNNING"}


def test_a_merge_sorts_only_when_a_key_repeats() -> None:
    unique = rows_of([_request("1"), _request("2")])["requests"]
    twice = rows_of([_request("1"), _request("1", source="other")])["requests"]
    (plain,) = _sql("requests", unique)
    (sorted_,) = _sql("requests", twice)
    assert "DISTINCT" not in plain and "ORDER BY" not in plain
    assert 'SELECT DISTINCT ON ("hash")' in sorted_
    assert 'ORDER BY "hash", "request_event_id"' in sorted_
    assert plain == sorted_.replace('DISTINCT ON ("hash") ', "").replace(
        ' ORDER BY "hash", "request_event_id"', "")


def test_the_merge_rules_say_how_a_conflict_resolves() -> None:
    (requests,) = _sql("requests", rows_of([_request("1")])["requests"])
    assert 'WHERE "submissions"."request_event_id" IS NULL' in requests
    assert '"scoring_version" = coalesce("submissions"."scoring_version"' in requests
    assert '"updated_at" = clock_timestamp()' in requests
    miners = BY_NAME["miners"]
    assert isinstance(miners.merge, KeepLatest)
    (upsert,) = [s.as_string(None) for s in statements.merges(miners, (True, False))]
    assert 'ORDER BY "hotkey", "block" DESC, "event_id" DESC' in upsert
    assert 'WHERE ("miners"."block", "miners"."event_id") < (EXCLUDED."block", ' in upsert
    assert isinstance(BY_NAME["status_events"].merge, InsertNew)
    assert isinstance(REQUESTS_FEED.merge, FillOnce)
    assert isinstance(STATUSES_FEED.merge, Advance)


def test_statuses_merge_runs_only_the_statements_it_needs() -> None:
    row = ("1", "v1", "QUEUED", 0, None, T)
    (queued,) = _sql("statuses", [row])
    (moved,) = _sql("statuses", [row[:3] + (2,) + row[4:]])
    assert '"status_rank" = 0' in queued and queued.endswith("DO NOTHING")
    assert '"status_rank" > 0' in moved and "DO UPDATE" in moved
    assert 'WHERE "submissions"."status_rank" < EXCLUDED."status_rank"' in moved
    assert _sql("statuses", [row, ("2", *row[1:3], 1, *row[4:])]) == [queued, moved]


def test_a_kept_score_completes_its_submission() -> None:
    score = ScoreComputed(hash="9", status="FAILED", reason="no", evaluator="e",
                          request_event_id="r")
    rows = rows_of([new_envelope(score, key="9", producer="t", time=T)])["scores"]
    insert, project = _sql("scores", rows)
    assert insert.startswith('INSERT INTO "scores"') and insert.endswith("DO NOTHING")
    assert project.startswith('INSERT INTO "submissions"')
    assert 'FROM "scores" WHERE ("hash", "scoring_version") IN' in project
    assert '"reason", "computed_at", 3 FROM' in project


def _insert_pairs(merge: str) -> dict[str, str]:
    """``target column → SELECT expression`` of an ``INSERT (...) SELECT ...`` statement."""
    flat = " ".join(merge.split())
    match = re.search(r'INSERT INTO "\w+" \((.*?)\) SELECT (?:DISTINCT ON \(.*?\) )?(.*?) FROM',
                      flat)
    assert match, merge
    columns = [c.strip().strip('"') for c in match.group(1).split(",")]
    expressions = [e.strip() for e in match.group(2).split(",")]
    assert len(columns) == len(expressions)
    return dict(zip(columns, expressions, strict=True))


def test_direct_copy_writes_what_the_merge_inserts() -> None:
    """COPY straight into the target must insert each row as the merge's SELECT would."""
    direct = [feed for feed in FEEDS if feed.direct]
    assert {feed.name for feed in direct} == {"requests", "evaluation_requests", "queued",
                                              "status_events"}
    for feed in direct:
        merge = statements.merges(feed, (False, False))[0].as_string(None)
        assert f'INSERT INTO "{feed.table.name}" ' in merge
        pairs = _insert_pairs(merge)
        assert list(pairs) == list(statements.direct_columns(feed))
        for col in feed.columns:
            assert pairs[col] == f'"{col}"'
        for col, value in feed.constants.items():
            assert pairs[col] == (f"'{value}'" if isinstance(value, str) else str(value))
        assert statements.direct_types(feed) == [
            feed.table.column(c).type for c in statements.direct_columns(feed)]


def test_staging_widens_integers_and_checks_their_range() -> None:
    feed = REQUESTS_FEED
    types = dict(zip(feed.columns, statements.stage_types(feed), strict=True))
    assert types["uid"] == "bigint" and types["hash"] == "text"
    assert statements.int_checks(feed) == [(feed.position("uid"), -(2**31), 2**31)]
