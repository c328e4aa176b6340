"""Errors of the scoring engine, rooted at the project's SpeechstreamError."""

from __future__ import annotations

from speechstream.exceptions import SpeechstreamError


class ScoringError(SpeechstreamError):
    """Base of the scoring engine's errors; the submission it hit is FAILED with the reason."""


class PrecheckError(ScoringError):
    """A submitted model failed a precheck; it is FAILED with this reason and never evaluated.

    ``code`` is one of REPO_NOT_FOUND, PICKLE_WEIGHTS, NO_WEIGHTS, TOO_LARGE, NO_CONFIG,
    UNSUPPORTED_ARCHITECTURE, ARCHITECTURE_ELSEWHERE, UNKNOWN_TEMPLATE, BAD_WEIGHTS.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ElsewhereError(PrecheckError):
    """The model's architecture is evaluated by another environment (``environment``); set up
    that environment (for Parler: ``bash scripts/setup-parler.sh``)."""

    def __init__(self, architecture: str, environment: str) -> None:
        super().__init__(
            "ARCHITECTURE_ELSEWHERE",
            f"{architecture} is evaluated by the {environment} evaluator environment, "
            "not this one",
        )
        self.architecture = architecture
        self.environment = environment


class ModelLoadError(ScoringError):
    """A model passed its prechecks but could not be loaded; check its config and weights."""


class ReferenceVoiceError(ScoringError):
    """The reference voice could not synthesize a text; check the voice service or flite."""


class TranscriptionError(ScoringError):
    """The ASR could not transcribe a clip; check the ASR service, model path or pocketsphinx."""


class TimeLimitError(ScoringError):
    """An evaluation ran past its time limit; raise the limit or use a faster device."""


class OutOfMemoryError(ScoringError):
    """An evaluation ran out of memory even one sample at a time; the model is too large here."""


class MethodUnavailableError(ScoringError):
    """A scoring method cannot run here (for example its weights are not provided locally)."""
