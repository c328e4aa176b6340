"""Fixtures of the scoring tests: tiny Musicgen models in a local models root."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from devstack.tiny.musicgen import build_tiny_musicgen
from speechstream.settings import ScoringSettings


@pytest.fixture(scope="session")
def models_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<root>/alice/tiny-tts`` (seed 1) and ``<root>/bob/tiny-tts`` (seed 2, sharper heads)."""
    root = tmp_path_factory.mktemp("models")
    build_tiny_musicgen(root / "alice" / "tiny-tts", seed=1)
    build_tiny_musicgen(root / "bob" / "tiny-tts", seed=2, head_scale=8.0)
    return root


@pytest.fixture
def repo_copy(models_root: Path, tmp_path: Path) -> Path:
    """A writable copy of alice's model to craft broken repos from (under ``tmp_path``)."""
    target = tmp_path / "root" / "carol" / "crafted"
    shutil.copytree(models_root / "alice" / "tiny-tts", target)
    return target


def fast_settings(root: Path, **extra: object) -> ScoringSettings:
    """Settings that keep a tiny evaluation to a few seconds on a small CPU."""
    values: dict[str, object] = {"models_root": root, "n_samples": 4, "max_audio_s": 2.0}
    values.update(extra)
    return ScoringSettings(**values)  # type: ignore[arg-type]
