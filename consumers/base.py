"""Contracts of the consumers package: the Scorer an evaluator calls, and what it returns."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Protocol

from pydantic import BaseModel, Field

from schemas.events import EvaluationRequested, SampleResult, ScoreManifest

StatusReporter = Callable[[Literal["PRECHECK", "RUNNING"], str | None], None]
"""Called by a scorer as it moves through PRECHECK and RUNNING (status, optional note)."""


class ScoreOutcome(BaseModel):
    """What a scorer found: COMPLETED with a total, or FAILED with a human-readable reason."""

    status: Literal["COMPLETED", "FAILED"]
    total_score: float | None = None
    reason: str | None = None
    samples: list[SampleResult] = Field(default_factory=list)
    timings: dict[str, float] = Field(default_factory=dict)
    revision: str | None = None
    content_hash: str | None = None
    """The safetensors content hash of the weights evaluated (duplicates share it)."""
    manifest: ScoreManifest | None = None
    """What reproduces the score; the evaluator adds its id."""


class Scorer(Protocol):
    """Scores one evaluation request; setup once, score many times, close once.

    ``score`` should return FAILED outcomes for failures it understands; an exception it
    raises is turned into a FAILED score event by the evaluator, never a crash loop.
    """

    def setup(self) -> None: ...

    def score(self, request: EvaluationRequested, report: StatusReporter) -> ScoreOutcome: ...

    def close(self) -> None: ...
