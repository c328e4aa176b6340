"""Contract of the consumers package: the Scorer that the evaluator and the auditor call."""

from __future__ import annotations

from typing import Protocol

from scoring.types import Report, ScoringResult, Submission


class Scorer(Protocol):
    """Scores one submission; start once, score many times, close once.

    ``score`` returns the engine's ``ScoringResult``: COMPLETED with a total in [0, 1], or FAILED
    with a reason. It reports RUNNING through ``report`` when the model passed its prechecks
    (PRECHECK is the evaluator's own). It is called through
    ``consumers.scorers.score_submission``, which refuses a scoring version the engine does not
    compute before it runs, and turns an exception it raises into a FAILED result, never a
    crash loop.
    """

    def start(self) -> None: ...

    def score(self, submission: Submission, report: Report) -> ScoringResult: ...

    def close(self) -> None: ...
