"""Scoring versions: the rules that decide a number, fixed per version.

A score is keyed by ``(hash, scoring_version)``; every version stays computable exactly as it
was, so an audit or a replay of an old score reproduces it. A new rule is a new version.

- ``v1``: WER after our own normalization (ASCII punctuation and symbols stripped) against the
  cleaned text that was spoken; a sample whose cross-entropy is not finite is dropped.
- ``v2`` (the default): as the original system decides the number. WER after jiwer's
  ``Compose([RemovePunctuation(), ToLowerCase(), Strip()])`` (Unicode punctuation removed,
  symbols such as ``$ +`` kept), the transcription compared with the prompt text as drawn
  (before cleaning and truncation); a sample whose cross-entropy is not finite still counts,
  its CE term ``0.5 / (1 + k·CE)`` being 0, with the reason recorded on the sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from schemas.fields import DEFAULT_SCORING_VERSION

__all__ = ["DEFAULT_SCORING_VERSION", "VERSIONS", "ScoringVersion", "known_versions",
           "scoring_version", "unknown_version"]


@dataclass(frozen=True)
class ScoringVersion:
    """How one version turns a sample's CE and transcription into its score."""

    name: str
    wer_normalization: Literal["ascii", "jiwer"]
    """``ascii``: ASCII punctuation and symbols stripped; ``jiwer``: the original's Compose."""
    wer_reference: Literal["cleaned", "as_drawn"]
    """The text the transcription is compared with: the cleaned, spoken text, or the prompt
    text as drawn from the prompt set."""
    nonfinite_ce: Literal["drop", "zero_term"]
    """A sample with a non-finite CE: dropped (an error), or kept with a CE term of 0."""


VERSIONS: dict[str, ScoringVersion] = {
    "v1": ScoringVersion("v1", wer_normalization="ascii", wer_reference="cleaned",
                         nonfinite_ce="drop"),
    "v2": ScoringVersion("v2", wer_normalization="jiwer", wer_reference="as_drawn",
                         nonfinite_ce="zero_term"),
}


def known_versions() -> list[str]:
    """Every version this engine computes, oldest first."""
    return list(VERSIONS)


def scoring_version(name: str) -> ScoringVersion | None:
    """The version called ``name``; None when this engine does not know it."""
    return VERSIONS.get(name)


def unknown_version(name: str) -> str | None:
    """Why this engine cannot score under the version called ``name``; None when it can. The
    one check of a submission's version, before any scorer runs
    (``consumers.scorers.score_submission``)."""
    if name in VERSIONS:
        return None
    return f"unknown scoring version {name!r}: this engine computes {', '.join(known_versions())}"
