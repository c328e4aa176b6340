"""The TTS scoring engine: SPEC §4 on torch + transformers, independent of Kafka.

Its settings are ``speechstream.settings.ScoringSettings``, read by the command and passed in.
The engine and its types are imported when first named (PEP 562): a command that only needs
``scoring.versions`` does not pay for torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "PrecheckError": "scoring.exceptions",
    "ScoringEngine": "scoring.engine",
    "ScoringError": "scoring.exceptions",
    "ScoringResult": "scoring.types",
    "Submission": "scoring.types",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'scoring' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
