"""The TTS scorer of the evaluator: the scoring engine behind the consumers.base.Scorer contract."""

from __future__ import annotations

import logging
from typing import Literal, cast

from consumers.base import ScoreOutcome, StatusReporter
from schemas.events import EvaluationRequested, SampleResult
from scoring.isolation import run_isolated
from scoring.types import ScoringResult, Submission
from speechstream.settings import ScoringSettings

log = logging.getLogger(__name__)


def to_submission(request: EvaluationRequested) -> Submission:
    """The scoring engine's view of an evaluation request."""
    return Submission(
        hash=request.hash,
        repo_namespace=request.repo_namespace,
        repo_name=request.repo_name,
        revision=request.revision,
        config_template=request.config_template,
        scoring_version=request.scoring_version,
    )


def to_outcome(result: ScoringResult) -> ScoreOutcome:
    """The evaluator's outcome of an engine result (reason prefixed with its failure code)."""
    samples = [
        SampleResult(
            index=s.index,
            text=s.text,
            speaker=s.speaker,
            ce=s.ce,
            wer=s.wer,
            transcription=s.transcription,
            score=s.score,
            error=s.error,
            note=s.note,
        )
        for s in result.samples
    ]
    reason = result.reason
    if result.status == "FAILED" and result.failure_code:
        reason = f"{result.failure_code}: {reason or 'no detail'}"
    total = None
    if result.status == "COMPLETED" and result.total_score is not None:
        total = min(1.0, max(0.0, result.total_score))
    return ScoreOutcome(
        status=result.status,
        total_score=total,
        reason=reason,
        samples=samples,
        timings={k: float(v) for k, v in result.timings.items()},
        revision=result.revision,
        content_hash=result.content_hash,
        manifest=result.manifest,
    )


class TTSScorer:
    """Scores each request in an isolated child process on ``device`` (see scoring.isolation).

    A model that exhausts memory, hangs past the time limit or crashes its process ends as a
    FAILED outcome with the reason; the evaluator process is never at risk.
    """

    def __init__(
        self,
        settings: ScoringSettings,
        device: str = "cpu",
        *,
        time_limit_s: float | None = None,
    ) -> None:
        self.settings = settings
        self.device = device
        self.time_limit_s = time_limit_s

    def setup(self) -> None:
        """Nothing to load up front: models are loaded per request, in the child process."""

    def score(self, request: EvaluationRequested, report: StatusReporter) -> ScoreOutcome:
        """Score one request in a child process and map the result to a ScoreOutcome."""

        def forward(status: str, note: str | None) -> None:
            if status in ("PRECHECK", "RUNNING"):
                report(cast(Literal["PRECHECK", "RUNNING"], status), note)

        result = run_isolated(
            self.settings, to_submission(request), self.device, forward, self.time_limit_s
        )
        if result.status == "FAILED":
            log.info("hash %s FAILED: %s %s", request.hash, result.failure_code, result.reason)
        return to_outcome(result)

    def close(self) -> None:
        """Nothing held between requests."""
