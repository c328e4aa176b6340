"""TTSScorer: the evaluator's scorer runs each request in a child process and never raises."""

from __future__ import annotations

from pathlib import Path

from consumers.tts import TTSScorer
from schemas.events import EvaluationRequested
from tests.unit.scoring.conftest import fast_settings


def _request(namespace: str, name: str) -> EvaluationRequested:
    return EvaluationRequested(
        hash="18358495043599921355",
        hotkey="a" * 64,
        uid=1,
        repo_namespace=namespace,
        repo_name=name,
        block=100,
        source_event_id="evt-1",
    )


def test_missing_repo_is_failed_with_reason(models_root: Path) -> None:
    scorer = TTSScorer(fast_settings(models_root))
    scorer.setup()
    statuses: list[str] = []
    outcome = scorer.score(_request("nobody", "nothing"), lambda s, n: statuses.append(s))
    scorer.close()
    assert outcome.status == "FAILED"
    assert outcome.reason and outcome.reason.startswith("REPO_NOT_FOUND")
    assert statuses == ["PRECHECK"]


def test_pickle_weights_are_failed_with_reason(repo_copy: Path) -> None:
    (repo_copy / "model.ckpt").write_bytes(b"\x80\x04pickled")
    scorer = TTSScorer(fast_settings(repo_copy.parents[1]))
    outcome = scorer.score(_request("carol", "crafted"), lambda s, n: None)
    assert outcome.status == "FAILED"
    assert outcome.reason and outcome.reason.startswith("PICKLE_WEIGHTS")


def test_hang_past_the_time_limit_is_failed(models_root: Path) -> None:
    scorer = TTSScorer(fast_settings(models_root), time_limit_s=1.0)
    outcome = scorer.score(_request("alice", "tiny-tts"), lambda s, n: None)
    assert outcome.status == "FAILED"
    assert outcome.reason and outcome.reason.startswith("TIME_LIMIT")


def test_out_of_memory_is_failed(models_root: Path) -> None:
    settings = fast_settings(models_root, memory_limit_bytes=1_000_000_000)
    outcome = TTSScorer(settings).score(_request("alice", "tiny-tts"), lambda s, n: None)
    assert outcome.status == "FAILED"
    assert outcome.reason and outcome.reason.startswith("OUT_OF_MEMORY")


def test_tiny_model_completes_through_the_child_process(models_root: Path) -> None:
    statuses: list[str] = []
    outcome = TTSScorer(fast_settings(models_root)).score(
        _request("alice", "tiny-tts"), lambda s, n: statuses.append(s)
    )
    assert outcome.status == "COMPLETED", outcome.reason
    assert outcome.total_score is not None and 0.0 <= outcome.total_score <= 1.0
    assert len(outcome.samples) == 4 and all(s.ce is not None for s in outcome.samples)
    assert statuses == ["PRECHECK", "RUNNING"]
