"""The words a submission page marks: jiwer's alignment, on normalized words."""

from __future__ import annotations

from api.pages import normalize, word_marks


def _kinds(words: list) -> list[tuple[str, str]]:
    return [(w.text, w.kind) for w in words]


def test_substitutions_deletions_and_insertions_are_marked() -> None:
    text, heard = word_marks("Hello, big World!", "hello small world again")
    assert _kinds(text) == [("hello", "equal"), ("big", "substitute"), ("world", "equal")]
    assert _kinds(heard) == [("hello", "equal"), ("small", "substitute"), ("world", "equal"),
                             ("again", "insert")]
    text, heard = word_marks("one two three", "one three")
    assert _kinds(text) == [("one", "equal"), ("two", "delete"), ("three", "equal")]
    assert _kinds(heard) == [("one", "equal"), ("three", "equal")]


def test_nothing_heard_or_nothing_written() -> None:
    text, heard = word_marks("say this", "")
    assert _kinds(text) == [("say", "delete"), ("this", "delete")] and heard == []
    text, heard = word_marks("...", "noise")
    assert text == [] and _kinds(heard) == [("noise", "insert")]


def test_normalize() -> None:
    assert normalize("  It's   A-OK!  ") == "its aok"
