"""The interface every model family adapter implements, and the loading code they share."""

from __future__ import annotations

import gc
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scoring.exceptions import ModelLoadError
from scoring.templates import Template


@dataclass(frozen=True)
class Generated:
    """One generated clip: a mono float32 waveform at the model's sample rate."""

    wave: np.ndarray
    sample_rate: int


def pick_dtype(device: torch.device) -> torch.dtype:
    """bf16 on a GPU that supports it, fp16 on other GPUs, fp32 on CPU."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


class TTSModel(ABC):
    """A loaded description-conditioned TTS model: a text encoder, a codebook decoder with
    output heads per codebook, and a neural codec.

    ``generate`` and ``teacher_forced_loss`` take whole batches; a batch's samples must not
    influence each other (padding is masked), so batched and one-at-a-time results agree.
    """

    family: str
    """The family's name in messages (``Musicgen``, ``Parler-TTS``)."""
    extra_positions = 0
    """Decoder positions a sample takes beyond its frames and the delay pattern (a prompt)."""

    sample_rate: int
    frame_rate: float
    template: Template
    device: torch.device
    dtype: torch.dtype
    n_codebooks: int
    model: Any
    tokenizer: Any

    def _load(self, model_class: Any, path: Path, template: Template, device: torch.device,
              *, cast: tuple[str, ...] | None = None) -> None:
        """Load ``path`` with ``model_class`` and its tokenizer: safetensors only, never remote
        code. The model goes to ``device`` in :func:`pick_dtype`'s precision (only the ``cast``
        submodules when given), its codec in float32; it must be mono."""
        from transformers import AutoTokenizer

        self.template = template
        self.device = device
        self.dtype = pick_dtype(device)
        try:
            model = model_class.from_pretrained(path, use_safetensors=True,
                                                trust_remote_code=False)
            self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            raise ModelLoadError(
                f"cannot load {self.family} model from {path.name}: {exc}"
            ) from exc
        if getattr(model.config.decoder, "audio_channels", 1) != 1:
            raise ModelLoadError(f"only mono {self.family} models are supported")
        model.eval()
        if self.dtype != torch.float32:
            for part in cast if cast is not None else ("",):
                module = getattr(model, part, None) if part else model
                if module is not None:
                    module.to(self.dtype)
        self.model = model.to(device)
        self.model.audio_encoder.float()
        codec = self.model.config.audio_encoder
        self.sample_rate = int(codec.sampling_rate)
        self.frame_rate = float(codec.frame_rate)
        self.n_codebooks = int(self.model.config.decoder.num_codebooks)

    def bytes_per_sample(self, n_frames: int) -> int:
        """A rough device-memory cost of one sample: KV caches, activations and CE logits."""
        cfg = self.model.config.decoder
        seq = n_frames + self.n_codebooks + self.extra_positions
        width = 2 if self.dtype != torch.float32 else 4
        kv = 4 * cfg.num_hidden_layers * cfg.hidden_size * seq * width
        acts = 8 * seq * max(cfg.ffn_dim, cfg.hidden_size) * width
        logits = 3 * self.n_codebooks * seq * (cfg.vocab_size + 1) * 4
        return kv + acts + logits

    def prompt_tokenizer(self) -> object:
        """The tokenizer of the text the model speaks (for SPEC §4 truncation)."""
        return self.tokenizer

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

    def close(self) -> None:
        """Drop the weights and return the device memory they hold."""
        self.model = None
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
