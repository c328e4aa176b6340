"""The interface every model family adapter implements, and the loaded model's metadata."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from scoring.templates import Template


@dataclass(frozen=True)
class Generated:
    """One generated clip: a mono float32 waveform at the model's sample rate."""

    wave: np.ndarray
    sample_rate: int


class TTSModel(ABC):
    """A loaded description-conditioned TTS model.

    ``generate`` and ``teacher_forced_loss`` take whole batches; a batch's samples must not
    influence each other (padding is masked), so batched and one-at-a-time results agree.
    """

    sample_rate: int
    frame_rate: float
    template: Template

    @abstractmethod
    def prompt_tokenizer(self) -> object:
        """The tokenizer of the text the model speaks (for SPEC §4 truncation)."""

    @abstractmethod
    def generate(
        self, descriptions: list[str], texts: list[str], n_frames: int, seed: int
    ) -> list[Generated]:
        """Generate one clip per (description, text) of ``n_frames`` codec frames each."""

    @abstractmethod
    def teacher_forced_loss(
        self, descriptions: list[str], texts: list[str], reference_waves: list[np.ndarray]
    ) -> list[float]:
        """Per-sample mean cross-entropy (nats per valid token) of the model on the codec tokens
        of ``reference_waves`` (at ``sample_rate``), with the model's codebook delay pattern."""

    @abstractmethod
    def close(self) -> None:
        """Release the weights and the device memory they hold."""
