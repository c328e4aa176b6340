"""Value types of the scoring engine: what goes in (a submission), what comes out (a result),
and how an evaluation reports its progress (a status callback)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.events import AudioB64, AudioClipKind, SampleResult, ScoreManifest
from schemas.fields import FinalStatus
from scoring.versions import DEFAULT_SCORING_VERSION

Step = Literal["PRECHECK", "RUNNING"]
"""A status an evaluation passes through before its result."""

Report = Callable[[Step, str | None], None]
"""The status callback, ``report(status, note)``: the evaluator publishes PRECHECK when it picks
a request up; the engine reports RUNNING once the model passed its prechecks. It may raise (the
evaluator's Kafka transaction): that is not the model failing, and ends the evaluation."""


def silent(status: Step, note: str | None) -> None:
    """A status callback that publishes nothing (the auditor, the benchmarks, tests)."""


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


class SampleClip(BaseModel):
    """One clip the evaluation listened to (``scoring.audio.encode_clip``), as the evaluator
    publishes it (``sample.audio``)."""

    model_config = ConfigDict(frozen=True)

    index: int
    clip: AudioClipKind
    sample_rate: int
    duration_s: float
    opus_b64: AudioB64
    mp3_b64: AudioB64


class ScoringResult(BaseModel):
    """The result of one submission, from the engine to the score event in this one shape:
    COMPLETED with a total in [0, 1], or FAILED with a reason.

    The evaluation child writes it on its stdout as is (``scoring.protocol``), every ``Scorer``
    returns it, and the evaluator turns it into ``score.computed`` in one place
    (``consumers.evaluator.Evaluator.score_envelope``). Its samples are the event's own
    ``SampleResult``.
    """

    status: FinalStatus
    total_score: float | None = None
    reason: str | None = None
    failure_code: str | None = None
    """The engine's code of a failure (``REPO_NOT_FOUND``, ``TIME_LIMIT``…); None where the
    engine never judged the model (an unknown scoring version, a scorer that raised)."""
    samples: list[SampleResult] = Field(default_factory=list)
    timings: dict[str, float] = Field(default_factory=dict)
    revision: str | None = None
    content_hash: str | None = None
    """The safetensors content hash of the weights evaluated (duplicates share it)."""
    method_scores: dict[str, float] = Field(default_factory=dict)
    manifest: ScoreManifest | None = Field(
        None, description="What reproduces the score (the evaluator id is the caller's to add)."
    )
    environment: str | None = Field(
        None, description="With ARCHITECTURE_ELSEWHERE: the evaluator environment to run it in."
    )
    audio: list[SampleClip] = Field(
        default_factory=list,
        description="Each sample's generated clip and its reference, encoded (with "
        "``keep_audio``); not part of the score event: the evaluator publishes them beside it.",
    )

    @classmethod
    def failed(cls, code: str | None, reason: str, **extra: object) -> ScoringResult:
        """A FAILED result with a machine-readable code and a human-readable reason."""
        return cls(status="FAILED", failure_code=code, reason=reason, **extra)  # type: ignore[arg-type]

    @property
    def full_reason(self) -> str | None:
        """The reason as people read it (the score event's): a FAILED result's prefixed with its
        code, ``<code>: <reason>``; otherwise the reason as it is."""
        if self.status == "FAILED" and self.failure_code:
            return f"{self.failure_code}: {self.reason or 'no detail'}"
        return self.reason
