"""WER and the SPEC §4 arithmetic around it: normalization, the sample score, the total."""

from __future__ import annotations

import math
import re
import string
from typing import Literal

import jiwer

_PUNCT = re.compile(f"[{re.escape(string.punctuation)}]")
_SPACES = re.compile(r"\s+")
_ORIGINAL = jiwer.Compose([jiwer.RemovePunctuation(), jiwer.ToLowerCase(), jiwer.Strip()])

Normalization = Literal["ascii", "jiwer"]


def normalize_for_wer(text: str, normalization: Normalization = "ascii") -> str:
    """``ascii`` (v1): ASCII punctuation and symbols removed, lower-cased, whitespace collapsed.
    ``jiwer`` (v2, the original's): Unicode punctuation removed (symbols such as ``$ +``
    kept), lower-cased, stripped, whitespace collapsed (as jiwer's own word split does)."""
    if normalization == "jiwer":
        return _SPACES.sub(" ", _ORIGINAL(text)).strip()
    return _SPACES.sub(" ", _PUNCT.sub("", text).lower()).strip()


def word_error_rate(
    reference: str, hypothesis: str, normalization: Normalization = "ascii"
) -> float:
    """WER of ``hypothesis`` against ``reference``, both normalized; an empty reference gives
    0.0 for an empty hypothesis and 1.0 otherwise."""
    ref = normalize_for_wer(reference, normalization)
    hyp = normalize_for_wer(hypothesis, normalization)
    if not ref:
        return 0.0 if not hyp else 1.0
    if not hyp:
        return 1.0
    return float(jiwer.wer(ref, hyp))


def ce_term(ce: float, k: float = 1.0) -> float:
    """``1 / (1 + k·CE)``; 0 for a CE that is not finite (the limit the original reaches for
    ``inf``; for NaN, the value SPEC §4 gives)."""
    if not math.isfinite(ce):
        return 0.0
    return 1.0 / (1.0 + k * ce)


def sample_score(ce: float, wer: float, k: float = 1.0) -> float:
    """``0.5 * 1 / (1 + k * CE) + 0.5 * (1 - WER)`` (unclipped); a non-finite CE's term is 0."""
    return 0.5 * ce_term(ce, k) + 0.5 * (1.0 - wer)


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
