"""The TTS scorer of the evaluator and the auditor: the scoring engine behind the
consumers.base.Scorer contract, each evaluation in a child process of its own."""

from __future__ import annotations

import logging

from scoring.isolation import run_isolated
from scoring.types import Report, ScoringResult, Submission
from speechstream.settings import ScoringSettings

log = logging.getLogger(__name__)


class TTSScorer:
    """Scores each submission in an isolated child process on ``device`` (see scoring.isolation).

    A model that exhausts memory, hangs past the time limit or crashes its process ends as a
    FAILED result with the reason; the calling process is never at risk.
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

    def start(self) -> None:
        """Nothing to load up front: models are loaded per submission, in the child process."""

    def score(self, submission: Submission, report: Report) -> ScoringResult:
        """Score one submission in a child process; the engine's result as it is."""
        result = run_isolated(self.settings, submission, self.device, report, self.time_limit_s)
        if result.status == "FAILED":
            log.info("hash %s FAILED: %s", submission.hash, result.full_reason)
        return result

    def close(self) -> None:
        """Nothing held between submissions."""
