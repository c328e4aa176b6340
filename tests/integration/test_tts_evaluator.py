"""The evaluator with the real TTS scorer on the real broker, scoring a tiny local model."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from devstack.tiny.musicgen import build_tiny_musicgen
from schemas import EvaluationRequested, new_envelope
from speechstream.kafka.admin import create_topics, delete_topics

pytestmark = pytest.mark.integration

HK = "cd" * 32


def _request(repo_name: str, source: str) -> EvaluationRequested:
    return EvaluationRequested(hash="424242" if repo_name == "tiny" else "77", hotkey=HK, uid=1,
                               repo_namespace="lab", repo_name=repo_name, block=5,
                               source_event_id=source, scoring_version="v2")


def test_tts_scorer_scores_a_tiny_model_the_same_twice(pipeline, tmp_path) -> None:
    build_tiny_musicgen(tmp_path / "models" / "lab" / "tiny", seed=3)
    scoring = {"SPEECHSTREAM_SCORING_MODELS_ROOT": str(tmp_path / "models"),
               "SPEECHSTREAM_SCORING_N_SAMPLES": "4"}
    pipeline.start("evaluator", ["evaluator", "run", "--device", "cpu"], **scoring)
    t = pipeline.kafka.topics
    requests = {"first": new_envelope(_request("tiny", "first"), key="424242", producer="t"),
                "gone": new_envelope(_request("missing", "gone"), key="77", producer="t"),
                # the same submission again: its score is committed, it is not scored again
                "again": new_envelope(_request("tiny", "again"), key="424242", producer="t")}
    pipeline.send(t.evaluation_requests, *requests.values())
    scores = pipeline.read(t.scores, 2, timeout_s=300)
    names = {env.event_id: name for name, env in requests.items()}
    by_source = {names[s.payload.request_event_id]: s.payload for s in scores}
    assert set(by_source) == {"first", "gone"}
    first = by_source["first"]
    assert first.status == "COMPLETED"
    assert 0.0 <= first.total_score <= 1.0
    assert len(first.samples) == 4

    # Determinism: the same request scored again by a fresh evaluator (on topics of its own,
    # where nothing is scored yet) is bit-identical on CPU, sample by sample, and so is what
    # reproduces it.
    other = pipeline.kafka.model_copy(update={"topic_prefix": f"{t.prefix}again."})
    create_topics(other)
    try:
        pipeline.start("evaluator-again", ["evaluator", "run", "--device", "cpu"],
                       SPEECHSTREAM_TOPIC_PREFIX=other.topic_prefix,
                       SPEECHSTREAM_EVALUATOR_GROUP_ID=f"{other.topic_prefix}evaluators",
                       **scoring)
        pipeline.send(other.topics.evaluation_requests,
                      new_envelope(_request("tiny", "first"), key="424242", producer="t"))
        (second,) = (s.payload for s in pipeline.read(other.topics.scores, 1, timeout_s=300))
    finally:
        pipeline.stop()
        delete_topics(other, [name for name, _ in other.topics.all()])
    assert second.status == "COMPLETED"
    assert first.total_score == second.total_score
    assert [(x.ce, x.wer, x.transcription, x.score) for x in first.samples] == [
        (x.ce, x.wer, x.transcription, x.score) for x in second.samples]
    assert first.manifest is not None and second.manifest is not None
    # Where a reference came from is not what reproduces the score: the second evaluator on
    # this machine found every reference in the shared reference cache.
    assert second.manifest.reference_cached == [True] * 4
    assert first.manifest.model_copy(update={"reference_cached": []}) == (
        second.manifest.model_copy(update={"reference_cached": []}))
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
