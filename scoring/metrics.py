"""SPEC §4 arithmetic: WER normalization, the v1 sample score and the total."""

from __future__ import annotations

import math
import re
import string

import jiwer

_PUNCT = re.compile(f"[{re.escape(string.punctuation)}]")
_SPACES = re.compile(r"\s+")


def normalize_for_wer(text: str) -> str:
    """Punctuation removed, lower-cased, whitespace collapsed and stripped."""
    return _SPACES.sub(" ", _PUNCT.sub("", text).lower()).strip()


def word_error_rate(reference: str, hypothesis: str) -> float:
    """WER of ``hypothesis`` against ``reference``, both normalized; an empty reference gives
    0.0 for an empty hypothesis and 1.0 otherwise."""
    ref = normalize_for_wer(reference)
    hyp = normalize_for_wer(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    if not hyp:
        return 1.0
    return float(jiwer.wer(ref, hyp))


def sample_score(ce: float, wer: float, k: float = 1.0) -> float:
    """``0.5 * 1 / (1 + k * CE) + 0.5 * (1 - WER)`` (unclipped)."""
    return 0.5 * 1.0 / (1.0 + k * ce) + 0.5 * (1.0 - wer)


def clip01(value: float) -> float:
    """``value`` clipped to [0, 1]; NaN counts as 0."""
    if math.isnan(value):
        return 0.0
    return min(1.0, max(0.0, value))


def total_score(scores: list[float]) -> float | None:
    """Mean of the clipped sample scores; None when there are none."""
    if not scores:
        return None
    return sum(clip01(s) for s in scores) / len(scores)
