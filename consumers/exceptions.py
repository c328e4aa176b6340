"""Errors of the evaluator consumer."""

from __future__ import annotations

from schemas.exceptions import SpeechstreamError


class EvaluatorError(SpeechstreamError):
    """The evaluator cannot go on; the message says which Kafka call failed and why."""


class FencedError(EvaluatorError):
    """Another evaluator with the same evaluator id took over; stop this one."""
