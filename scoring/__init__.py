"""The TTS scoring engine: SPEC §4 on torch + transformers, independent of Kafka."""

from scoring.engine import ScoringEngine
from scoring.exceptions import PrecheckError, ScoringError
from scoring.settings import ScoringSettings
from scoring.types import SampleScore, ScoringResult, Submission

__all__ = [
    "PrecheckError",
    "SampleScore",
    "ScoringEngine",
    "ScoringError",
    "ScoringResult",
    "ScoringSettings",
    "Submission",
]
