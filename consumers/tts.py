"""The TTS scorer of the evaluator and the auditor: the scoring engine behind the
consumers.base.Scorer contract, each evaluation in a child process of its own."""

from __future__ import annotations

import logging
import sys

from scoring.isolation import WarmPool, run_isolated
from scoring.types import Report, ScoringResult, Submission
from speechstream.settings import ScoringSettings

log = logging.getLogger(__name__)


class TTSScorer:
    """Scores each submission in an isolated child process on ``device`` (see scoring.isolation).

    A model that exhausts memory, hangs past the time limit or crashes its process ends as a
    FAILED result with the reason; the calling process is never at risk. With
    ``settings.warm`` the next evaluation's process is started ahead (``WarmPool``): at
    :meth:`start`, and behind every evaluation.
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
        self.pool = WarmPool(settings.warm_max_idle_s) if settings.warm else None

    def start(self) -> None:
        """Start the first evaluation process ahead (with ``settings.warm``); models are loaded
        per submission, in the child process."""
        if self.pool is not None:
            self.pool.warm(sys.executable, self.settings, self.device)

    def score(self, submission: Submission, report: Report) -> ScoringResult:
        """Score one submission in a child process; the engine's result as it is."""
        result = run_isolated(self.settings, submission, self.device, report, self.time_limit_s,
                              self.pool)
        if result.status == "FAILED":
            log.info("hash %s FAILED: %s", submission.hash, result.full_reason)
        return result

    def close(self) -> None:
        """End the processes waiting for an evaluation (nothing else is held)."""
        if self.pool is not None:
            self.pool.close()
