"""Which scorer an evaluator runs (the TTS scoring engine, or another ``Scorer`` by name), and the
one way the evaluator and the auditor call one."""

from __future__ import annotations

import importlib
import inspect
import logging

from consumers.base import Scorer
from consumers.exceptions import ScorerLoadError
from scoring.types import Report, ScoringResult, Step, Submission
from scoring.versions import unknown_version
from speechstream.settings import ScoringSettings


def load_scorer(spec: str, device: str, scoring: ScoringSettings) -> Scorer:
    """The scorer named by ``spec``: ``tts`` (with ``scoring``) or ``module:Class``.

    The class is constructed with ``device=`` when its constructor takes it, else with no
    arguments.
    """
    if spec == "tts":
        from consumers.tts import TTSScorer

        return TTSScorer(scoring, device=device)
    module_name, _, name = spec.partition(":")
    if not module_name or not name:
        raise ScorerLoadError(f"--scorer must be 'tts' or module:Class, got {spec!r}")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as exc:
        raise ScorerLoadError(f"cannot load scorer {spec!r}: {exc}") from exc
    if "device" in inspect.signature(cls).parameters:
        return cls(device=device)
    return cls()


def failure_reason(exc: BaseException) -> str:
    """The human-readable reason of a scorer exception: its type and message."""
    message = str(exc).strip()
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def score_submission(scorer: Scorer, submission: Submission, report: Report,
                     log: logging.Logger) -> ScoringResult:
    """``scorer``'s result for ``submission``, as the evaluator and the auditor get it.

    - A scoring version this engine does not compute is FAILED with the reason, unscored (the
      one check of the version).
    - An exception of the scorer is FAILED with its type and message.
    - An exception of ``report`` (the evaluator's Kafka transaction) is not the model failing:
      it is raised again, even where the scorer swallowed it, and ``report`` raises it again if
      called after it.
    """
    refused = unknown_version(submission.scoring_version)
    if refused is not None:
        return ScoringResult.failed(None, refused)
    report_failed: list[BaseException] = []

    def guarded(status: Step, note: str | None) -> None:
        if report_failed:
            raise report_failed[0]
        try:
            report(status, note)
        except BaseException as exc:
            report_failed.append(exc)
            raise

    try:
        result = scorer.score(submission, guarded)
    except Exception as exc:  # noqa: BLE001 - a scorer failure is a FAILED result
        if report_failed:
            raise report_failed[0] from exc
        log.exception("scorer failed on %s", submission.hash)
        return ScoringResult.failed(None, failure_reason(exc))
    if report_failed:  # the scorer swallowed it: the statuses are incomplete
        raise report_failed[0]
    return result
