"""The evaluator with the real TTS scorer on the real broker, scoring a tiny local model."""

from __future__ import annotations

import time
from pathlib import Path

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


def _evaluations_of(pid: int) -> list[int]:
    """The live evaluation processes (``scoring.child``) whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == pid and state != "Z" and b"scoring.child" in cmdline:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_an_evaluation_dies_with_its_evaluator(pipeline, tmp_path) -> None:
    build_tiny_musicgen(tmp_path / "models" / "lab" / "tiny", seed=3)
    evaluator = pipeline.start("evaluator", ["evaluator", "run", "--device", "cpu"],
                               SPEECHSTREAM_SCORING_MODELS_ROOT=str(tmp_path / "models"),
                               SPEECHSTREAM_SCORING_N_SAMPLES="200",
                               SPEECHSTREAM_SCORING_MAX_AUDIO_S="8")
    t = pipeline.kafka.topics
    pipeline.send(t.evaluation_requests,
                  new_envelope(_request("tiny", "long"), key="424242", producer="t"))
    assert evaluator.process is not None
    pid = evaluator.process.pid
    # RUNNING: the model is loaded and the evaluation process has a minute of work left in
    # which it writes nothing, so only the kernel's parent-death signal can end it early.
    statuses = pipeline.read(t.evaluation_status, 2, timeout_s=120)
    assert "RUNNING" in {s.payload.status for s in statuses}
    children = _evaluations_of(pid)
    assert children
    evaluator.process.kill()  # kill -9 of the evaluator alone, not of its process group
    evaluator.process.wait()
    started = time.monotonic()
    pipeline.wait(lambda: not any(_alive(c) for c in children),
                  "the evaluation process to die with its evaluator", timeout_s=10)
    print(f"evaluation process gone {time.monotonic() - started:.2f}s after its evaluator")
