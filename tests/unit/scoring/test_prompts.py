"""The shipped prompt set, the deterministic draw and SPEC §4 text cleaning."""

from __future__ import annotations

from devstack.tiny.musicgen import build_tokenizer
from scoring.prompts import clean_text, draw_samples, prompt_set, speakers


def test_shipped_data_has_prompts_and_about_twenty_speakers() -> None:
    assert len(prompt_set()) >= 40
    assert len(speakers()) == 20
    assert all(s["description"] and s["name"] for s in speakers())


def test_draw_is_deterministic_per_hash_and_version() -> None:
    first = draw_samples("18358495043599921355", "v1", 40)
    assert first == draw_samples("18358495043599921355", "v1", 40)
    assert first != draw_samples("18358495043599921355", "v2", 40)
    assert first != draw_samples("1", "v1", 40)
    assert [s.index for s in first] == list(range(40))
    assert len({s.text for s in first}) == 40


def test_draw_larger_than_the_prompt_set() -> None:
    samples = draw_samples("7", "v1", len(prompt_set()) + 5)
    assert len(samples) == len(prompt_set()) + 5


def test_clean_text_keeps_only_allowed_characters() -> None:
    raw = 'Hi\\ there <b>"friend"</b> #1 & [ok]; (yes)! what? a-b: it\'s_ 50% é'
    assert clean_text(raw) == 'Hi there b"friend"b 1  [ok]; (yes)! what? a-b: it\'s 50 é'


def test_clean_text_truncates_to_prompt_tokens() -> None:
    tokenizer = build_tokenizer()
    text = " ".join(["tomorrow should be mostly sunny"] * 60)
    cleaned = clean_text(text, tokenizer, max_tokens=100)
    assert len(tokenizer.encode(cleaned, add_special_tokens=False)) <= 100
    assert text.startswith(cleaned)
    short = "Tomorrow should be sunny."
    assert clean_text(short, tokenizer) == short


def test_clean_text_without_tokenizer_counts_words() -> None:
    assert clean_text("a b c d", max_tokens=2) == "a b"
