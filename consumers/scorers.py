"""Which scorer an evaluator runs: the TTS scoring engine, or another ``Scorer`` by name."""

from __future__ import annotations

import importlib
import inspect

from consumers.base import Scorer
from consumers.exceptions import ScorerLoadError
from speechstream.settings import ScoringSettings


def load_scorer(spec: str, device: str, scoring: ScoringSettings) -> Scorer:
    """The scorer named by ``spec``: ``tts`` (with ``scoring``) or ``module:Class``.

    The class is constructed with ``device=`` when its constructor takes it, else with no
    arguments.
    """
    if spec == "tts":
        from consumers.tts import TTSScorer

        return TTSScorer(scoring, device=device)
    module_name, _, name = spec.partition(":")
    if not module_name or not name:
        raise ScorerLoadError(f"--scorer must be 'tts' or module:Class, got {spec!r}")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as exc:
        raise ScorerLoadError(f"cannot load scorer {spec!r}: {exc}") from exc
    if "device" in inspect.signature(cls).parameters:
        return cls(device=device)
    return cls()
