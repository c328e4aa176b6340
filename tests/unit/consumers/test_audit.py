"""The auditor's decisions without Kafka: which scores it samples, and its verdicts."""

from __future__ import annotations

import pytest

from consumers.audit import Auditor, judge, manifest_differences, selected, submission_of
from consumers.settings import AuditSettings
from schemas.envelope import new_envelope
from schemas.events import ScoreComputed, ScoreManifest
from scoring.types import Report, ScoringResult, Submission
from speechstream.settings import KafkaSettings, ScoringSettings

H = "1234567890"


def _manifest(**update: object) -> ScoreManifest:
    base = ScoreManifest(
        repo_namespace="lab", repo_name="tiny", model_revision="abc", content_hash="c" * 64,
        scoring_version="v2", draw_seed=7, prompt_ids=[3, 1], speakers=["Ann", "Bo"],
        prompt_set_hash="p" * 64, reference_voice="flite 2.2 (slt)",
        asr="pocketsphinx 5.1.1 (en-us)", generation={"decoding": "greedy", "batch_size": 8},
        torch="2.11.0", device="cpu", dtype="float32", deterministic=True, evaluator="ev-cpu",
    )
    return base.model_copy(update=update)


def _score(total: float = 0.5, manifest: ScoreManifest | None = None,
           status: str = "COMPLETED") -> ScoreComputed:
    return ScoreComputed(hash=H, scoring_version="v2", status=status,  # type: ignore[arg-type]
                         total_score=total if status == "COMPLETED" else None,
                         evaluator="ev-cpu", request_event_id="r", content_hash="c" * 64,
                         manifest=manifest)


def _result(total: float | None = 0.5, **update: object) -> ScoringResult:
    fields: dict[str, object] = {"status": "COMPLETED", "total_score": total,
                                 "content_hash": "c" * 64, "manifest": _manifest()}
    fields.update(update)
    return ScoringResult(**fields)  # type: ignore[arg-type]


def test_the_sample_is_deterministic_and_about_the_rate() -> None:
    hashes = [str(10**9 + i) for i in range(4000)]
    picked = [h for h in hashes if selected(h, "v2", 0.05)]
    assert picked == [h for h in hashes if selected(h, "v2", 0.05)]
    assert 140 <= len(picked) <= 260  # 5 % of 4000 = 200
    assert all(selected(h, "v2", 1.0) for h in hashes[:50])
    assert not any(selected(h, "v2", 0.0) for h in hashes[:50])


@pytest.mark.parametrize(
    ("result", "verdict", "reason_part"),
    [
        (_result(0.5 + 1e-7), "agree", None),
        (_result(0.52), "disagree", "differ by 0.02"),
        (_result(None, status="FAILED", failure_code="REPO_NOT_FOUND", reason="gone"),
         "unavailable", "gone from its source"),
        (_result(None, status="FAILED", failure_code="TIME_LIMIT", reason="slow"),
         "unavailable", "auditor could not"),
        (_result(None, status="FAILED", failure_code="NO_SAMPLE_SUCCEEDED", reason="x"),
         "disagree", "FAILED where the score COMPLETED"),
        (_result(0.9, content_hash="d" * 64), "unavailable", "weights changed"),
    ],
)
def test_verdicts(result: ScoringResult, verdict: str, reason_part: str | None) -> None:
    got, reason = judge(_score(0.5, _manifest()), result, 1e-6)
    assert got == verdict
    assert (reason is None) if reason_part is None else (reason_part in (reason or ""))


def test_a_score_without_a_manifest_is_unavailable_not_a_disagreement() -> None:
    assert judge(_score(0.5, None), None, 1e-6)[0] == "unavailable"


def test_manifest_differences_leave_out_the_evaluator_and_the_reference_cache() -> None:
    scored = _manifest(reference_cached=[False, False])
    audited = _manifest(evaluator="auditor-cpu", torch="2.12.0", reference_cached=[True, True],
                        generation={"decoding": "greedy", "batch_size": 4})
    assert manifest_differences(scored, audited) == {
        "torch": ["2.11.0", "2.12.0"], "generation.batch_size": [8, 4]}
    assert manifest_differences(scored, scored) == {}


class _Scorer:
    """A scorer that records what it is asked and answers ``total`` (or raises)."""

    def __init__(self, total: float = 0.25, *, raises: bool = False) -> None:
        self.asked: list[Submission] = []
        self.total, self.raises = total, raises

    def start(self) -> None:
        """Nothing to load."""

    def score(self, submission: Submission, report: Report) -> ScoringResult:
        self.asked.append(submission)
        if self.raises:
            raise RuntimeError("the auditor's GPU fell off")
        return _result(self.total)

    def close(self) -> None:
        """Nothing to release."""


def _auditor(scorer: _Scorer) -> Auditor:
    return Auditor(KafkaSettings(), AuditSettings(sample_rate=1.0, auditor_id="aud"),
                   ScoringSettings(), scorer=scorer)


def test_the_audit_rescores_what_the_manifest_names() -> None:
    scorer = _Scorer(0.25)
    asked = scorer.asked
    auditor = _auditor(scorer)
    env = new_envelope(_score(0.5, _manifest()), key=H, producer="t")
    audit = auditor.audit(env)
    assert audit is not None and asked == [submission_of(H, _manifest())]
    assert asked[0].revision == "abc" and asked[0].scoring_version == "v2"
    p = audit.payload
    assert (p.verdict, p.scored_total, p.audited_total, p.evaluator, p.auditor) == (
        "disagree", 0.5, 0.25, "ev-cpu", "aud")
    assert p.score_event_id == env.event_id and p.manifest.evaluator == "aud"
    assert audit.event_id == auditor.audit(env).event_id  # one id per (score, auditor)
    failed = new_envelope(_score(status="FAILED", manifest=_manifest()), key=H, producer="t")
    assert auditor.audit(failed) is None and len(asked) == 2


def test_a_version_the_auditor_does_not_compute_or_a_raising_scorer_is_unavailable() -> None:
    scorer = _Scorer(raises=True)
    auditor = _auditor(scorer)
    audit = auditor.audit(new_envelope(_score(0.5, _manifest()), key=H, producer="t"))
    assert audit is not None and len(scorer.asked) == 1
    assert audit.payload.verdict == "unavailable"  # type: ignore[union-attr]
    assert "RuntimeError: the auditor's GPU fell off" in audit.payload.reason  # type: ignore
    newer = _score(0.5, _manifest(scoring_version="v9"))
    audit = auditor.audit(new_envelope(newer, key=H, producer="t"))
    assert audit is not None and len(scorer.asked) == 1  # refused before the scorer ran
    assert audit.payload.verdict == "unavailable"  # type: ignore[union-attr]
    assert "unknown scoring version 'v9'" in audit.payload.reason  # type: ignore
