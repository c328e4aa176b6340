"""The TTS scoring engine: SPEC §4 on torch + transformers, independent of Kafka.

Its settings are ``speechstream.settings.ScoringSettings``, read by the command and passed in.
"""

from scoring.engine import ScoringEngine
from scoring.exceptions import PrecheckError, ScoringError
from scoring.types import SampleScore, ScoringResult, Submission

__all__ = [
    "PrecheckError",
    "SampleScore",
    "ScoringEngine",
    "ScoringError",
    "ScoringResult",
    "Submission",
]
