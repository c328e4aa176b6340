"""The reference cache: lossless, keyed by everything that makes the audio, bounded by its
budget least recently used first, safe under concurrent writers, and scores bit-identical with
and without it."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest

from scoring.engine import ScoringEngine
from scoring.refcache import (
    CachedReferenceVoice,
    ReferenceCache,
    key_of,
    voice_identity,
)
from scoring.reference import HttpReferenceVoice
from scoring.types import Submission
from tests.unit.scoring.conftest import fast_settings


class CountingVoice:
    """A voice whose audio depends on the text only; counts its syntheses."""

    def __init__(self, name: str = "counting 1.0") -> None:
        self.name = name
        self.calls = 0

    def describe(self) -> str:
        return self.name

    def synthesize(self, text: str) -> tuple[np.ndarray, int]:
        self.calls += 1
        rng = np.random.default_rng(len(text))
        return rng.standard_normal(160 * len(text)).astype(np.float32), 16_000

    def close(self) -> None:
        pass


def test_a_miss_then_a_hit_gives_the_same_samples(tmp_path: Path) -> None:
    voice = CountingVoice()
    cached = CachedReferenceVoice(voice, ReferenceCache(tmp_path, 10**9))
    first = cached.synthesize("hello there")
    assert cached.last_hit is False
    second = cached.synthesize("hello there")
    assert cached.last_hit is True and voice.calls == 1
    assert second[1] == first[1] == 16_000
    assert second[0].dtype == np.float32 and np.array_equal(first[0], second[0])


def test_the_key_names_the_text_the_voice_and_what_a_service_is_asked_for() -> None:
    assert key_of("a", "flite 2.2 (slt)") != key_of("b", "flite 2.2 (slt)")
    assert key_of("a", "flite 2.2 (slt)") != key_of("a", "flite 2.3 (slt)")
    short = HttpReferenceVoice("http://ref", None, max_audio_length_ms=4000)
    long = HttpReferenceVoice("http://ref", None, max_audio_length_ms=8000)
    assert voice_identity(short) != voice_identity(long)


def test_an_unreadable_entry_is_a_miss_and_is_removed(tmp_path: Path) -> None:
    cache = ReferenceCache(tmp_path, 10**9)
    key = key_of("torn", "v")
    cache.put(key, np.ones(100, np.float32), 16_000)
    (path,) = tmp_path.glob("*/*.npz")
    path.write_bytes(path.read_bytes()[:40])
    assert cache.get(key) is None and not path.exists()


def test_an_unreadable_entry_that_cannot_be_removed_is_still_a_miss(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = ReferenceCache(tmp_path, 10**9)
    key = key_of("stuck", "v")
    cache.put(key, np.ones(100, np.float32), 16_000)
    cache._path(key).write_bytes(b"not an npz")

    def refuse(self: Path, missing_ok: bool = False) -> None:
        raise PermissionError(13, "read-only", str(self))

    monkeypatch.setattr(Path, "unlink", refuse)
    assert cache.get(key) is None


def test_eviction_keeps_the_budget_least_recently_used_first(tmp_path: Path) -> None:
    cache = ReferenceCache(tmp_path, 10**9)
    keys = [key_of(str(i), "v") for i in range(4)]
    for i, key in enumerate(keys):
        cache.put(key, np.zeros(1000, np.float32), 16_000)
        os.utime(cache._path(key), (1000 + i, 1000 + i))
    os.utime(cache._path(keys[0]), (2000, 2000))  # the oldest, used again last
    size = cache._path(keys[0]).stat().st_size
    cache.budget_bytes = 2 * size
    assert cache.evict() == 2
    assert [cache.get(k) is not None for k in keys] == [True, False, False, True]


def _hammer(directory: str, worker: int) -> int:
    cache = ReferenceCache(Path(directory), 40_000)  # small: evictions race the writers
    bad = 0
    for i in range(60):
        text = f"text {i % 12}"
        wave = np.full(1000 + i % 12, i % 12, np.float32)
        key = key_of(text, "v")
        if (i + worker) % 2:
            cache.put(key, wave, 16_000)
        found = cache.get(key)
        if found is not None and not np.array_equal(found[0], wave):
            bad += 1
    return bad


def test_concurrent_writers_and_evictors_never_hand_out_a_torn_entry(tmp_path: Path) -> None:
    with multiprocessing.get_context("fork").Pool(4) as pool:
        bad = pool.starmap(_hammer, [(str(tmp_path), w) for w in range(4)])
    assert bad == [0, 0, 0, 0]
    assert sum(size for _, size, _ in ReferenceCache(tmp_path, 0).entries()) <= 40_000 + 20_000


@pytest.mark.parametrize("budget", [0, 10**9])
def test_scores_are_bit_identical_with_and_without_the_cache(
        models_root: Path, tmp_path: Path, budget: int) -> None:
    submission = Submission(hash="18358495043599921355", repo_namespace="alice",
                            repo_name="tiny-tts")
    settings = fast_settings(models_root, reference_cache_dir=tmp_path / "refs",
                             reference_cache_budget_bytes=budget)
    plain = fast_settings(models_root, reference_cache_budget_bytes=0)

    def score(s: object) -> object:
        engine = ScoringEngine(s)  # type: ignore[arg-type]
        try:
            return engine.score(submission)
        finally:
            engine.close()

    baseline, first, second = score(plain), score(settings), score(settings)
    for result in (baseline, first, second):
        assert result.status == "COMPLETED", result.reason  # type: ignore[attr-defined]
    n = len(first.samples)  # type: ignore[attr-defined]
    assert first.manifest.reference_cached == [False] * n  # type: ignore[attr-defined]
    assert second.manifest.reference_cached == [bool(budget)] * n  # type: ignore[attr-defined]
    for result in (first, second):
        assert result.total_score == baseline.total_score  # type: ignore[attr-defined]
        assert [(s.ce, s.wer, s.transcription) for s in result.samples] == [  # type: ignore[attr-defined]
            (s.ce, s.wer, s.transcription) for s in baseline.samples]  # type: ignore[attr-defined]
