"""The evaluator with the real TTS scorer on the real broker, scoring a tiny local model."""

from __future__ import annotations

import pytest

from devstack.tiny.musicgen import build_tiny_musicgen
from schemas import EvaluationRequested, new_envelope

pytestmark = pytest.mark.integration

HK = "cd" * 32


def _request(repo_name: str, source: str) -> EvaluationRequested:
    return EvaluationRequested(hash="424242" if repo_name == "tiny" else "77", hotkey=HK, uid=1,
                               repo_namespace="lab", repo_name=repo_name, block=5,
                               source_event_id=source, scoring_version="v2")


def test_tts_scorer_scores_a_tiny_model_the_same_twice(pipeline, tmp_path) -> None:
    build_tiny_musicgen(tmp_path / "models" / "lab" / "tiny", seed=3)
    pipeline.start("evaluator", ["evaluator", "run", "--device", "cpu"],
                   SPEECHSTREAM_SCORING_MODELS_ROOT=str(tmp_path / "models"),
                   SPEECHSTREAM_SCORING_N_SAMPLES="4")
    t = pipeline.kafka.topics
    pipeline.send(t.evaluation_requests,
                  new_envelope(_request("tiny", "first"), key="424242", producer="t"),
                  new_envelope(_request("missing", "gone"), key="77", producer="t"),
                  new_envelope(_request("tiny", "second"), key="424242", producer="t"))
    scores = pipeline.read(t.scores, 3, timeout_s=300)
    by_source = {s.payload.request_event_id: s.payload for s in scores}
    assert len(by_source) == 3
    first, second = (p for p in by_source.values() if p.hash == "424242")
    assert first.status == second.status == "COMPLETED"
    assert 0.0 <= first.total_score <= 1.0
    assert len(first.samples) == 4
    # Determinism: the same request scored twice on CPU is bit-identical, sample by sample,
    # and so is what reproduces it.
    assert first.total_score == second.total_score
    assert [(x.ce, x.wer, x.transcription, x.score) for x in first.samples] == [
        (x.ce, x.wer, x.transcription, x.score) for x in second.samples]
    assert first.manifest is not None and first.manifest == second.manifest
    assert first.manifest.deterministic and first.manifest.scoring_version == "v2"
    missing = next(p for p in by_source.values() if p.hash == "77")
    assert missing.status == "FAILED"
    assert "lab/missing" in (missing.reason or "")
    statuses = {s.payload.status for s in pipeline.read(t.evaluation_status, 2)}
    assert {"PRECHECK", "RUNNING"} <= statuses
