"""The maintenance report: durations, the text and JSON forms, the exit status."""

from __future__ import annotations

import json

import pytest

from speechstream.maintenance import (
    Report,
    Section,
    format_bytes,
    format_duration,
    parse_duration,
)


@pytest.mark.parametrize(("text", "seconds"), [
    ("0s", 0), ("90", 90), ("15m", 900), ("1h", 3600), ("2d", 172800), ("1h30m", 5400),
    ("0.5h", 1800), (" 1H ", 3600),
])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "1 h", "1w", "-1h", "1h-"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_formats() -> None:
    assert [format_duration(s) for s in (5, 250, 7500, 270000)] == [
        "5s", "4m 10s", "2h 05m", "3d 3h"]
    assert [format_bytes(n) for n in (300, 2048, 3 << 30)] == ["300 B", "2.0 KiB", "3.0 GiB"]


def _ok() -> Section:
    return Section("dead letters", False, "no dead letters")


def _bad() -> Section:
    return Section("model cache", True, "over", ["line"], "--apply evicts 1", {"bytes": 5})


def test_nothing_needs_a_hand_exits_0() -> None:
    report = Report([_ok()])
    assert report.exit_code == 0
    assert report.text().splitlines() == [
        "== dead letters: ok", "   no dead letters", "", "nothing needs a hand"]


def test_something_needs_a_hand_exits_1_and_says_what_to_do() -> None:
    report = Report([_ok(), _bad()])
    assert report.exit_code == 1
    text = report.text()
    assert "== model cache: NEEDS A HAND" in text and "   to do: --apply evicts 1" in text
    assert text.endswith("something needs a hand")
    fixed = _bad()
    fixed.applied = True
    applied = Report([fixed, _bad()], applied=True).text()
    assert "   done: --apply evicts 1" in applied and "   to do: --apply evicts 1" in applied
    assert applied.endswith("something needs a hand (after --apply)")


def test_json_carries_every_section_and_its_data() -> None:
    doc = json.loads(Report([_ok(), _bad()], applied=True).json())
    assert doc["needs_hand"] and doc["applied"]
    assert doc["sections"][1] == {"name": "model cache", "needs_hand": True, "summary": "over",
                                  "action": "--apply evicts 1", "applied": False,
                                  "bytes": 5}
