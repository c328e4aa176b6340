"""Errors of the evaluator consumer."""

from __future__ import annotations

from schemas.exceptions import SpeechstreamError


class EvaluatorError(SpeechstreamError):
    """The evaluator cannot go on; the message says which Kafka call failed and why."""


class FencedError(EvaluatorError):
    """Another evaluator took over this transactional id, or the producer failed fatally; stop."""


class TransactionAbortedError(EvaluatorError):
    """A transaction was aborted and nothing of it is visible; the request is evaluated again."""


class ConsumeError(EvaluatorError):
    """The consumer hit a fatal error; check the broker, the group id and the credentials."""


class ScorerLoadError(EvaluatorError):
    """The scorer named on the command line cannot be loaded; use ``tts`` or ``module:Class``."""
