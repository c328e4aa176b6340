"""Model family adapters and the registry that maps a config's architecture to one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from scoring.exceptions import PrecheckError
from scoring.models.base import Generated, TTSModel
from scoring.templates import Template

Loader = Callable[[Path, Template, torch.device], TTSModel]


def _load_musicgen(path: Path, template: Template, device: torch.device) -> TTSModel:
    from scoring.models.musicgen import MusicgenTTS

    return MusicgenTTS(path, template, device)


LOADERS: dict[str, Loader] = {"MusicgenForConditionalGeneration": _load_musicgen}
"""Architectures this environment evaluates."""

ELSEWHERE: dict[str, str] = {
    "ParlerTTSForConditionalGeneration": (
        "Parler-TTS models are evaluated by a separate Parler evaluator environment "
        "(parler-tts pins transformers 4.46.1, which cannot share this one); this evaluator "
        "does not run them"
    ),
}
"""Architectures that are recognized but evaluated by another evaluator environment."""


def check_architecture(architectures: list[str] | None) -> str:
    """The supported architecture named by a config, or a precheck failure saying why not."""
    names = architectures or []
    for name in names:
        if name in LOADERS:
            return name
    for name in names:
        if name in ELSEWHERE:
            raise PrecheckError("ARCHITECTURE_ELSEWHERE", f"{name}: {ELSEWHERE[name]}")
    supported = ", ".join(sorted(LOADERS))
    raise PrecheckError(
        "UNSUPPORTED_ARCHITECTURE",
        f"config.json names {names or 'no architecture'}; supported: {supported}",
    )


def load_model(architecture: str, path: Path, template: Template, device: torch.device) -> TTSModel:
    """Load a checked model directory with the adapter of its architecture."""
    return LOADERS[architecture](path, template, device)


__all__ = ["Generated", "TTSModel", "check_architecture", "load_model", "LOADERS", "ELSEWHERE"]
