"""Contracts of the scoring engine's parts: reference voice, transcriber and scoring method."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class ReferenceVoice(Protocol):
    """Speaks a text in a fixed voice; the engine encodes it with the model's codec for CE."""

    def synthesize(self, text: str) -> tuple[np.ndarray, int]:
        """A mono float32 waveform of ``text`` and its sample rate."""
        ...

    def describe(self) -> str:
        """Its name and version, for a score's manifest."""
        ...

    def close(self) -> None: ...


class Transcriber(Protocol):
    """Turns a clip into text for WER."""

    def transcribe(self, wave: np.ndarray, sample_rate: int) -> str:
        """The words heard in a mono float32 waveform."""
        ...

    def describe(self) -> str:
        """Its name and version, for a score's manifest."""
        ...

    def close(self) -> None: ...
