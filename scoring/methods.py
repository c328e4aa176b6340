"""Pluggable, weighted scoring methods: CE + WER and the optional human-likeness slot."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from schemas.events import SampleResult
from scoring.exceptions import MethodUnavailableError
from scoring.wer import sample_score, total_score
from speechstream.settings import ScoringSettings


@dataclass
class SampleRun:
    """One sample as the engine works on it, handed to every method; ``result()`` is what the
    score carries of it."""

    index: int
    text: str
    speaker: str | None = None
    ce: float | None = None
    wer: float | None = None
    transcription: str | None = None
    score: float | None = None
    error: str | None = None
    note: str | None = None
    """How the sample was scored when a version's rule applied (a non-finite CE)."""
    wave: np.ndarray | None = None
    sample_rate: int | None = None
    ce_not_finite: bool = False
    """The CE was not finite and the version keeps the sample (its CE term is 0)."""
    description: str | None = None
    """The voice the sample asks for."""

    def result(self) -> SampleResult:
        """The sample as the score event carries it."""
        return SampleResult(
            index=self.index, text=self.text, speaker=self.speaker,
            description=self.description, ce=self.ce, wer=self.wer,
            transcription=self.transcription, score=self.score, error=self.error, note=self.note,
        )


class ScoringMethod(Protocol):
    """Turns the sample runs into a total in [0, 1] (None when nothing could be scored)."""

    name: str
    weight: float

    def score(self, runs: list[SampleRun]) -> float | None: ...


class CeWerMethod:
    """SPEC §4: ``0.5 / (1 + k·CE) + 0.5 · (1 − WER)`` per sample, mean of clipped scores.

    A sample kept with a non-finite CE (``v2``) scores its WER half only.
    """

    name = "ce_wer"

    def __init__(self, weight: float = 1.0, k: float = 1.0) -> None:
        self.weight = weight
        self.k = k

    def score(self, runs: list[SampleRun]) -> float | None:
        """Fill each successful sample's score and return the mean over them."""
        scores = []
        for run in runs:
            ce = math.inf if run.ce_not_finite else run.ce
            if run.error is None and ce is not None and run.wer is not None:
                run.score = sample_score(ce, run.wer, self.k)
                scores.append(run.score)
        return total_score(scores)


class HumanLikenessMethod:
    """An MLP over emotion2vec utterance embeddings; runs only with local weights.

    This build ships the slot, not the embedding model: configured with weights, it refuses to
    run with a clear reason rather than produce a score it cannot compute.
    """

    name = "human_likeness"

    def __init__(self, weights: Path, weight: float) -> None:
        self.weights = weights
        self.weight = weight

    def score(self, runs: list[SampleRun]) -> float | None:
        """Refuse: the emotion2vec embedding model is not part of this environment."""
        if not self.weights.is_file():
            raise MethodUnavailableError(f"human-likeness weights {self.weights} do not exist")
        raise MethodUnavailableError(
            "the human-likeness method needs emotion2vec embeddings, which this environment "
            "does not provide; unset SPEECHSTREAM_SCORING_HUMAN_LIKENESS_WEIGHTS"
        )


def methods_for(settings: ScoringSettings) -> list[ScoringMethod]:
    """The scoring methods (every scoring version shares them; versions differ in how the
    engine measures WER and keeps samples: ``scoring.versions``)."""
    methods: list[ScoringMethod] = [CeWerMethod(1.0, settings.ce_k)]
    if settings.human_likeness_weights is not None and settings.human_likeness_weight > 0:
        methods.append(
            HumanLikenessMethod(settings.human_likeness_weights, settings.human_likeness_weight)
        )
    return methods


def combine(totals: dict[str, float], weights: dict[str, float]) -> float:
    """The weighted mean of the method totals."""
    weight_sum = sum(weights[name] for name in totals)
    return sum(totals[name] * weights[name] for name in totals) / weight_sum
