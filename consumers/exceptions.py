"""Errors of the consumers (the evaluator and its scorers).

Kafka failures (fenced, aborted transactions, fatal consumer errors) are the floor's:
``speechstream.exceptions``.
"""

from __future__ import annotations

from speechstream.exceptions import SpeechstreamError


class ScorerLoadError(SpeechstreamError):
    """The scorer named on the command line cannot be loaded; use ``tts`` or ``module:Class``."""
