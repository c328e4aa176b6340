"""The pure parts of the maintenance checks on the tables: reasons, dead-letter groups, the
waiting-requests section."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sinks.maintenance import (
    WaitingSubmission,
    dead_letters_section,
    group_dead_letters,
    normalize_reason,
    requests_section,
)
from speechstream.kafka.admin import GroupInfo

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("error", "reason"), [
    ("not JSON: Expecting value: line 1 column 1 (char 0)", "not JSON"),
    ("oversize payload: 300000 bytes > limit 262144", "oversize payload"),
    ("unsupported schema version 7 (this build reads 1)",
     "unsupported schema version N (this build reads N)"),
    ("schema violation (3 errors), first at payload.hash: Field required",
     "schema violation (N errors), first at payload.hash"),
    ("  spaced\t\tout  ", "spaced out"),
    (": nothing before the colon", "(no reason)"),
    ("x" * 200, "x" * 79 + "…"),
])
def test_a_reason_is_its_first_clause_without_numbers(error: str, reason: str) -> None:
    assert normalize_reason(error) == reason


def test_dead_letters_fold_by_consumer_and_reason_newest_first() -> None:
    t = NOW - timedelta(hours=1)
    rows = [
        ("sink", "not JSON: Expecting value: line 1 column 1 (char 0)", "a", 2, t),
        ("sink", "not JSON: Extra data: line 1 column 5 (char 4)", "b", 1, t + timedelta(1)),
        ("intake", "not JSON: Expecting value", "a", 4, t - timedelta(days=3)),
        ("sink", "oversize payload: 9 bytes > limit 1", "a", 1, t - timedelta(days=1)),
    ]
    groups = group_dead_letters(rows)
    assert [(g.consumer, g.reason, g.count) for g in groups] == [
        ("sink", "not JSON", 3), ("sink", "oversize payload", 1), ("intake", "not JSON", 4)]
    assert groups[0].newest == t + timedelta(1)
    assert groups[0].topics == ("a", "b")
    assert groups[0].example.startswith("not JSON: Extra data")


def test_only_recent_dead_letters_need_a_hand() -> None:
    groups = group_dead_letters([
        ("sink", "not JSON: x", "t", 2, NOW - timedelta(hours=2)),
        ("sink", "oversize payload: 9", "t", 5, NOW - timedelta(days=3)),
    ])
    recent = dead_letters_section(groups, NOW, within_s=24 * 3600)
    assert recent.needs_hand and recent.summary.startswith("2 of 7 dead letters in 1 group")
    assert [g["recent"] for g in recent.data["groups"]] == [True, False]
    old = dead_letters_section(groups, NOW, within_s=3600)
    assert not old.needs_hand and old.action is None
    assert old.summary == "7 dead letters, none newer than 1h 00m"
    empty = dead_letters_section([], NOW, within_s=3600)
    assert not empty.needs_hand and empty.summary == "no dead letters"


def _waiting(hash_: str, *, recorded: bool = True, age_s: float = 7200) -> WaitingSubmission:
    return WaitingSubmission(hash=hash_, hotkey="hk", uid=1, repo="a/b", status="QUEUED",
                             scoring_version="v1", since=NOW - timedelta(seconds=age_s),
                             age_s=age_s, request_recorded=recorded)


def _group(members: int) -> GroupInfo:
    return GroupInfo("evaluators", "STABLE" if members else "EMPTY", members, members)


LAG = {"p.evaluation.requests": 3, "p.evaluation.rescores": 0}


def test_waiting_requests_with_no_evaluator_need_a_hand_and_say_what_to_run() -> None:
    s = requests_section([_waiting("1"), _waiting("2")], _group(0), LAG, 3600)
    assert s.needs_hand and s.data["no_evaluator"]
    assert s.summary == "2 waiting longer than 1h 00m and the evaluator group has no member"
    assert "speechstream evaluator run" in (s.action or "")
    assert "SPEECHSTREAM_EVALUATOR_GROUP_ID=evaluators" in (s.action or "")
    assert "p.evaluation.requests 3, p.evaluation.rescores 0" in "\n".join(s.lines)


def test_waiting_requests_with_an_evaluator_are_listed_but_need_no_hand() -> None:
    s = requests_section([_waiting("1")], _group(1), LAG, 3600)
    assert not s.needs_hand and not s.data["no_evaluator"] and s.action is None
    assert "not waiting for want of one" in s.summary


def test_a_status_without_a_request_needs_a_hand_even_with_an_evaluator() -> None:
    s = requests_section([_waiting("1", recorded=False)], _group(2), LAG, 3600)
    assert s.needs_hand and s.data["without_request"] == ["1"]
    assert "nothing here can queue them" in (s.action or "")
    assert "NO REQUEST in PostgreSQL" in "\n".join(s.lines)


def test_nothing_waiting_is_ok_even_with_no_evaluator() -> None:
    s = requests_section([], _group(0), LAG, 60)
    assert not s.needs_hand and s.summary == "no request waiting longer than 1m 00s"


def test_a_long_list_is_cut_in_text_but_whole_in_json() -> None:
    s = requests_section([_waiting(str(i)) for i in range(30)], _group(0), LAG, 60, limit=5)
    assert sum(1 for line in s.lines if line.startswith("QUEUED")) == 5
    assert "... and 25 more" in s.lines[-1] and len(s.data["waiting"]) == 30
