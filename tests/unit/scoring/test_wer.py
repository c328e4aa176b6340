"""SPEC §4 arithmetic: reference values, clipping, totals and WER normalization."""

from __future__ import annotations

import math

import pytest

from scoring.wer import clip01, normalize_for_wer, sample_score, total_score, word_error_rate


@pytest.mark.parametrize(
    ("ce", "wer", "expected"),
    [
        (0.0, 0.0, 1.0),
        (1.0, 0.0, 0.75),
        (2.5, 0.1, 0.5928571428571429),
        (0.7, 1.4, 0.0941176470588),
    ],
)
def test_sample_score_reference_values(ce: float, wer: float, expected: float) -> None:
    assert sample_score(ce, wer, k=1.0) == pytest.approx(expected, abs=1e-9)


def test_total_is_mean_of_clipped_scores() -> None:
    assert total_score([1.2, -0.3, 0.5]) == pytest.approx((1.0 + 0.0 + 0.5) / 3)
    assert total_score([]) is None
    assert clip01(math.nan) == 0.0


def test_wer_normalization() -> None:
    assert normalize_for_wer("  Hello, World!  It's ME.  ") == "hello world its me"
    assert word_error_rate("Hello, world!", "hello world") == 0.0
    assert word_error_rate("the cat sat", "the cat") == pytest.approx(1 / 3)
    assert word_error_rate("one two", "") == 1.0
    assert word_error_rate("", "") == 0.0
    assert word_error_rate("a b", "x y z w") == pytest.approx(2.0)
