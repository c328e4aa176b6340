"""Model family adapters and the registry that maps a config's architecture to one."""

from __future__ import annotations

from collections.abc import Callable
from importlib.util import find_spec
from pathlib import Path

import torch

from scoring.exceptions import ElsewhereError, PrecheckError
from scoring.models.base import Generated, TTSModel
from scoring.templates import Template

Loader = Callable[[Path, Template, torch.device], TTSModel]
PARLER = "ParlerTTSForConditionalGeneration"


def _load_musicgen(path: Path, template: Template, device: torch.device) -> TTSModel:
    from scoring.models.musicgen import MusicgenTTS

    return MusicgenTTS(path, template, device)


def _load_parler(path: Path, template: Template, device: torch.device) -> TTSModel:
    from scoring.models.parler import ParlerTTS

    return ParlerTTS(path, template, device)


def parler_available() -> bool:
    """True in the Parler environment (the ``parler_tts`` package is importable)."""
    return find_spec("parler_tts") is not None


LOADERS: dict[str, Loader] = {"MusicgenForConditionalGeneration": _load_musicgen}
"""Architectures this environment evaluates."""

ENVIRONMENTS: dict[str, str] = {PARLER: "parler"}
"""Architectures evaluated by another evaluator environment, and that environment's name."""

if parler_available():
    LOADERS[PARLER] = _load_parler


def preload() -> None:
    """Import the model code of every architecture this environment evaluates (transformers'
    and parler_tts' modules load lazily, a second or more each): a warm evaluation process
    does it before its submission arrives."""
    from transformers import MusicgenForConditionalGeneration  # noqa: F401

    import scoring.models.musicgen  # noqa: F401

    if PARLER in LOADERS:
        from parler_tts import ParlerTTSForConditionalGeneration  # noqa: F401

        import scoring.models.parler  # noqa: F401


def check_architecture(architectures: list[str] | None) -> str:
    """The supported architecture named by a config, or a precheck failure saying why not.

    An architecture of another environment raises ElsewhereError, which the isolation layer
    answers by running the evaluation again with that environment's interpreter.
    """
    names = architectures or []
    for name in names:
        if name in LOADERS:
            return name
    for name in names:
        if name in ENVIRONMENTS:
            raise ElsewhereError(name, ENVIRONMENTS[name])
    supported = ", ".join(sorted(set(LOADERS) | set(ENVIRONMENTS)))
    raise PrecheckError(
        "UNSUPPORTED_ARCHITECTURE",
        f"config.json names {names or 'no architecture'}; supported: {supported}",
    )


def load_model(architecture: str, path: Path, template: Template, device: torch.device) -> TTSModel:
    """Load a checked model directory with the adapter of its architecture."""
    return LOADERS[architecture](path, template, device)


__all__ = [
    "ENVIRONMENTS",
    "LOADERS",
    "PARLER",
    "Generated",
    "TTSModel",
    "check_architecture",
    "load_model",
    "parler_available",
    "preload",
]
