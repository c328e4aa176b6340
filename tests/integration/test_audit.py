"""The audit consumer on the real broker and PostgreSQL: the demo's tiny models scored by the
real evaluator are audited as agreeing; a perturbed evaluator (tests.scorers) is caught; a
model gone from its source is `unavailable`; the sink keeps manifests and audits, and the
leaderboard shows the disagreement."""

from __future__ import annotations

import json
import shutil

import pytest

from cli.demo import MINERS, DemoMiner
from devstack.tiny.musicgen import build_tiny_musicgen
from schemas import EvaluationRequested, new_envelope
from tests.scorers import PERTURBATION

pytestmark = pytest.mark.integration

HK = "cd" * 32
SCORING = {"SPEECHSTREAM_SCORING_N_SAMPLES": "3", "SPEECHSTREAM_SCORING_MAX_AUDIO_S": "2"}


# The demo's models: alice's is scored honestly, bob's is withdrawn after it is scored, carol's
# is scored by the perturbed evaluator.
ALICE, BOB, CAROL = (next(m for m in MINERS if m.name == n) for n in ("alice", "bob", "carol"))


def _request(hash_: str, miner: DemoMiner) -> EvaluationRequested:
    return EvaluationRequested(hash=hash_, hotkey=HK, uid=miner.uid, repo_namespace=miner.name,
                               repo_name=miner.repo_name, block=5,
                               source_event_id=f"src-{hash_}", scoring_version="v2")


def test_audits_agree_catch_a_perturbed_evaluator_and_mark_a_gone_model(
    pipeline, tmp_path
) -> None:
    models = tmp_path / "models"
    for m in (ALICE, BOB, CAROL):
        build_tiny_musicgen(models / m.name / m.repo_name, seed=m.seed, size="tiny",
                            head_scale=m.head_scale)
    env = {"SPEECHSTREAM_SCORING_MODELS_ROOT": str(models), **SCORING}
    t = pipeline.kafka.topics
    sink = pipeline.start("sink", ["sink", "run"])

    # The honest evaluator scores two models; then a perturbed one takes over the group.
    # A static member's partitions wait for it: a short session hands them over sooner.
    honest = pipeline.start("evaluator", ["evaluator", "run", "--device", "cpu"],
                            SPEECHSTREAM_EVALUATOR_EVALUATOR_ID="honest",
                            SPEECHSTREAM_EVALUATOR_SESSION_TIMEOUT_MS="6000", **env)
    pipeline.send(t.evaluation_requests,
                  *(new_envelope(_request(h, n), key=h, producer="t")
                    for h, n in (("101", ALICE), ("202", BOB))))
    pipeline.read(t.scores, 2, timeout_s=240)
    honest.stop()
    pipeline.start("cheater", ["evaluator", "run", "--device", "cpu",
                               "--scorer", "tests.scorers:PerturbedTTSScorer"],
                   SPEECHSTREAM_EVALUATOR_EVALUATOR_ID="cheater", **env)
    pipeline.send(t.evaluation_requests,
                  new_envelope(_request("303", CAROL), key="303", producer="t"))
    scores = {s.payload.hash: s.payload for s in pipeline.read(t.scores, 3, timeout_s=240)}
    assert {h: s.status for h, s in scores.items()} == {
        "101": "COMPLETED", "202": "COMPLETED", "303": "COMPLETED"}
    assert scores["303"].evaluator == "cheater-cpu"
    for s in scores.values():
        assert s.manifest is not None and s.manifest.evaluator == s.evaluator
        assert s.manifest.repo_namespace in ("alice", "bob", "carol")

    shutil.rmtree(models / BOB.name / BOB.repo_name)  # withdrawn after it was scored
    pipeline.start("auditor", ["audit", "run", "--sample-rate", "1", "--device", "cpu"],
                   SPEECHSTREAM_AUDIT_AUDITOR_ID="auditor-1", **env)
    audits = {a.payload.hash: a.payload for a in pipeline.read(t.audits, 3, timeout_s=240)}
    assert {h: a.verdict for h, a in audits.items()} == {
        "101": "agree", "202": "unavailable", "303": "disagree"}
    agreed = audits["101"]
    assert agreed.audited_total == pytest.approx(agreed.scored_total, abs=agreed.tolerance)
    assert agreed.auditor == "auditor-1" and agreed.evaluator == "honest-cpu"
    assert agreed.differences == {}  # same device, same software, same draw
    assert "gone from its source" in (audits["202"].reason or "")
    caught = audits["303"]
    assert caught.evaluator == "cheater-cpu"
    assert abs(caught.scored_total - caught.audited_total) == pytest.approx(PERTURBATION,
                                                                           abs=1e-9)

    # The sink keeps the manifests and the audits; the leaderboard shows the disagreement.
    pipeline.wait(lambda: pipeline.query("SELECT count(*) FROM audits")[0][0] == 3,
                  "three audits in PostgreSQL")
    rows = pipeline.query("SELECT hash, verdict, evaluator FROM audits ORDER BY hash")
    assert rows == [("101", "agree", "honest-cpu"), ("202", "unavailable", "honest-cpu"),
                    ("303", "disagree", "cheater-cpu")]
    manifests = pipeline.query("SELECT hash, manifest->>'prompt_set_hash' FROM scores")
    assert len(manifests) == 3 and all(m for _, m in manifests)
    board = json.loads(pipeline.cli("leaderboard", "--json").stdout)
    by_hash = {r["hash"]: r for r in board}
    assert by_hash["303"]["audit"]["verdict"] == "disagree"
    assert by_hash["101"]["manifest"]["evaluator"] == "honest-cpu"
    text = pipeline.cli("leaderboard").stdout
    assert "AUDIT DISAGREES" in text
    per_evaluator = json.loads(pipeline.cli("audit", "summary", "--json").stdout)
    assert [(r["evaluator"], r["agree"], r["disagree"], r["unavailable"], r["disagree_rate"])
            for r in per_evaluator] == [("cheater-cpu", 0, 1, 0, 1.0),
                                        ("honest-cpu", 1, 0, 1, 0.0)]
    assert "cheater-cpu" in pipeline.cli("audit", "summary").stdout
    sink.stop()
