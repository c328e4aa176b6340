"""Value types of the scoring engine: what goes in (a submission) and what comes out."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.events import ScoreManifest
from scoring.versions import DEFAULT_SCORING_VERSION


class Submission(BaseModel):
    """One model to score: the repo, its revision, how it is prompted, and the draw's seed."""

    model_config = ConfigDict(frozen=True)

    hash: str
    repo_namespace: str
    repo_name: str
    revision: str | None = None
    config_template: str = "default"
    scoring_version: str = DEFAULT_SCORING_VERSION

    @property
    def repo_id(self) -> str:
        """``namespace/name``."""
        return f"{self.repo_namespace}/{self.repo_name}"


class Sample(BaseModel):
    """One drawn sample: the text to speak, the message it answers, and the speaker's voice."""

    model_config = ConfigDict(frozen=True)

    index: int
    prompt_id: int
    """The prompt's position in the prompt set."""
    text: str
    user_message: str
    speaker: str
    description: str


class SampleScore(BaseModel):
    """What one sample scored, or the error that stopped it."""

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

    @property
    def ok(self) -> bool:
        """True when the sample produced a score."""
        return self.error is None and self.score is not None


class ScoringResult(BaseModel):
    """The outcome of one submission: COMPLETED with a total in [0, 1], or FAILED with a reason."""

    status: Literal["COMPLETED", "FAILED"]
    total_score: float | None = None
    reason: str | None = None
    failure_code: str | None = None
    samples: list[SampleScore] = Field(default_factory=list)
    timings: dict[str, float] = Field(default_factory=dict)
    revision: str | None = None
    content_hash: str | None = None
    method_scores: dict[str, float] = Field(default_factory=dict)
    manifest: ScoreManifest | None = Field(
        None, description="What reproduces the score (the evaluator id is the caller's to add)."
    )
    environment: str | None = Field(
        None, description="With ARCHITECTURE_ELSEWHERE: the evaluator environment to run it in."
    )

    @classmethod
    def failed(cls, code: str, reason: str, **extra: object) -> ScoringResult:
        """A FAILED result with a machine-readable code and a human-readable reason."""
        return cls(status="FAILED", failure_code=code, reason=reason, **extra)  # type: ignore[arg-type]
