"""TTSScorer: the evaluator's scorer runs each submission in a child process and never raises."""

from __future__ import annotations

from pathlib import Path

from consumers.tts import TTSScorer
from scoring.types import Submission, silent
from tests.unit.scoring.conftest import fast_settings


def _submission(namespace: str, name: str) -> Submission:
    return Submission(hash="18358495043599921355", repo_namespace=namespace, repo_name=name)


def test_missing_repo_is_failed_with_reason(models_root: Path) -> None:
    scorer = TTSScorer(fast_settings(models_root))
    scorer.start()
    statuses: list[str] = []
    result = scorer.score(_submission("nobody", "nothing"), lambda s, n: statuses.append(s))
    scorer.close()
    assert result.status == "FAILED"
    assert result.failure_code == "REPO_NOT_FOUND" and result.reason
    assert result.full_reason and result.full_reason.startswith("REPO_NOT_FOUND: ")
    assert statuses == []  # PRECHECK is the evaluator's; RUNNING only past the prechecks


def test_pickle_weights_are_failed_with_reason(repo_copy: Path) -> None:
    (repo_copy / "model.ckpt").write_bytes(b"\x80\x04pickled")
    scorer = TTSScorer(fast_settings(repo_copy.parents[1]))
    result = scorer.score(_submission("carol", "crafted"), silent)
    assert result.status == "FAILED"
    assert result.failure_code == "PICKLE_WEIGHTS" and result.reason


def test_hang_past_the_time_limit_is_failed(models_root: Path) -> None:
    scorer = TTSScorer(fast_settings(models_root), time_limit_s=1.0)
    result = scorer.score(_submission("alice", "tiny-tts"), silent)
    assert result.status == "FAILED"
    assert result.failure_code == "TIME_LIMIT" and result.reason


def test_out_of_memory_is_failed(models_root: Path) -> None:
    settings = fast_settings(models_root, memory_limit_bytes=1_000_000_000)
    result = TTSScorer(settings).score(_submission("alice", "tiny-tts"), silent)
    assert result.status == "FAILED"
    assert result.failure_code == "OUT_OF_MEMORY" and result.reason


def test_tiny_model_completes_through_the_child_process(models_root: Path) -> None:
    statuses: list[str] = []
    result = TTSScorer(fast_settings(models_root)).score(
        _submission("alice", "tiny-tts"), lambda s, n: statuses.append(s)
    )
    assert result.status == "COMPLETED", result.reason
    assert result.total_score is not None and 0.0 <= result.total_score <= 1.0
    assert len(result.samples) == 4 and all(s.ce is not None for s in result.samples)
    assert statuses == ["RUNNING"]
