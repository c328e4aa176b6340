"""Warm evaluation processes: the isolation holds in a process started ahead (one evaluation
per process; a hang, an OOM, a crash, a refused repo each take only their own), and a waiting
process prepared for other settings, or waiting too long, is replaced."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from consumers.tts import TTSScorer
from scoring.isolation import WarmPool
from scoring.types import Submission, silent
from speechstream.settings import ScoringSettings
from tests.unit.scoring.conftest import fast_settings

READY_S = 180.0


def _submission(namespace: str, name: str) -> Submission:
    return Submission(hash="18358495043599921355", repo_namespace=namespace, repo_name=name)


def _warm(settings: ScoringSettings, **kwargs: float) -> TTSScorer:
    """A scorer whose first evaluation process has prepared."""
    scorer = TTSScorer(settings, **kwargs)  # type: ignore[arg-type]
    scorer.start()
    assert scorer.pool is not None
    assert scorer.pool.wait_ready(sys.executable, READY_S), "the warm process did not prepare"
    return scorer


@pytest.fixture
def warm_scorer(models_root: Path) -> Iterator[TTSScorer]:
    scorer = _warm(fast_settings(models_root))
    yield scorer
    scorer.close()


def test_a_warm_process_scores_then_the_next_one_waits(warm_scorer: TTSScorer) -> None:
    pool = warm_scorer.pool
    assert pool is not None
    first = pool._waiting[sys.executable]
    statuses: list[str] = []
    result = warm_scorer.score(_submission("alice", "tiny-tts"), lambda s, n: statuses.append(s))
    assert result.status == "COMPLETED", result.reason
    assert len(result.samples) == 4 and all(s.ce is not None for s in result.samples)
    assert statuses == ["RUNNING"]
    assert pool.counts == {"warm": 1, "cold": 0, "replaced": 0}
    # One evaluation per process: the one that scored has exited, another waits.
    assert first.process.poll() == 0
    after = pool._waiting[sys.executable]
    assert after.process.pid != first.process.pid and after.alive()


def test_warm_and_cold_processes_score_alike(models_root: Path,
                                             warm_scorer: TTSScorer) -> None:
    warm = warm_scorer.score(_submission("bob", "tiny-tts"), silent)
    cold = TTSScorer(fast_settings(models_root, warm=False)).score(
        _submission("bob", "tiny-tts"), silent)
    assert warm.status == cold.status == "COMPLETED"
    assert warm.total_score == cold.total_score
    assert [(s.ce, s.wer, s.transcription) for s in warm.samples] == [
        (s.ce, s.wer, s.transcription) for s in cold.samples]


def test_refused_repos_are_failed_in_a_warm_process(warm_scorer: TTSScorer,
                                                    repo_copy: Path) -> None:
    missing = warm_scorer.score(_submission("nobody", "nothing"), silent)
    assert missing.status == "FAILED" and missing.failure_code == "REPO_NOT_FOUND"
    assert warm_scorer.pool is not None and warm_scorer.pool.counts["warm"] == 1


def test_a_hang_past_the_time_limit_is_failed_in_a_warm_process(models_root: Path) -> None:
    scorer = _warm(fast_settings(models_root), time_limit_s=0.2)
    try:
        result = scorer.score(_submission("alice", "tiny-tts"), silent)
        assert result.status == "FAILED" and result.failure_code == "TIME_LIMIT"
        assert scorer.pool is not None and scorer.pool.counts["warm"] == 1
    finally:
        scorer.close()


def test_out_of_memory_is_failed_in_a_warm_process(models_root: Path) -> None:
    scorer = _warm(fast_settings(models_root, memory_limit_bytes=1_000_000_000))
    try:
        result = scorer.score(_submission("alice", "tiny-tts"), silent)
        assert result.status == "FAILED" and result.failure_code == "OUT_OF_MEMORY"
        assert scorer.pool is not None and scorer.pool.counts["warm"] == 1
    finally:
        scorer.close()


def test_a_warm_process_that_crashes_is_failed_and_the_next_one_is_fresh(
        models_root: Path) -> None:
    settings = fast_settings(models_root)
    pool = WarmPool()
    try:
        pool.warm(sys.executable, settings, "cpu")
        process = pool.take(sys.executable, settings, "cpu")
        assert process.wait_ready(READY_S)
        os.kill(process.process.pid, signal.SIGSEGV)
        result = process.run(_submission("alice", "tiny-tts"), silent, 60.0)
        assert result.status == "FAILED" and result.failure_code == "CRASHED"
        assert "SIGSEGV" in (result.reason or "")
        assert pool._waiting[sys.executable].process.pid != process.process.pid
    finally:
        pool.close()


def test_other_settings_or_a_long_wait_replace_the_waiting_process(models_root: Path) -> None:
    now = [0.0]
    pool = WarmPool(max_idle_s=60.0, clock=lambda: now[0])
    settings = fast_settings(models_root)
    try:
        pool.warm(sys.executable, settings, "cpu")
        first = pool._waiting[sys.executable]
        other = pool.take(sys.executable, fast_settings(models_root, n_samples=2), "cpu")
        assert pool.counts == {"warm": 0, "cold": 1, "replaced": 1}
        assert first.process.wait(30) is not None  # discarded, not left running
        other.discard()
        # The waiting one is now prepared for n_samples=2; it waits too long.
        now[0] = 61.0 + pool._waiting[sys.executable].started
        stale = pool._waiting[sys.executable]
        pool.take(sys.executable, fast_settings(models_root, n_samples=2), "cpu").discard()
        assert pool.counts == {"warm": 0, "cold": 2, "replaced": 2}
        assert stale.process.wait(30) is not None
    finally:
        pool.close()
    assert pool._waiting == {}


def test_closing_the_scorer_ends_its_waiting_process(models_root: Path) -> None:
    scorer = TTSScorer(fast_settings(models_root))
    scorer.start()
    assert scorer.pool is not None
    waiting = scorer.pool._waiting[sys.executable]
    scorer.close()
    assert waiting.process.poll() is not None
    assert TTSScorer(fast_settings(models_root, warm=False)).pool is None
