"""The evaluator's index of committed scores keeps what it asks of them, not their samples."""

from __future__ import annotations

from consumers.scored import ScoredIndex
from schemas.envelope import new_envelope
from schemas.events import SampleResult, ScoreComputed
from speechstream.settings import KafkaSettings
from tests.unit.consumers.test_audit import _manifest


def _score(hash_: str, request: str) -> ScoreComputed:
    samples = [SampleResult(index=i, text=f"line {i}", speaker="Ann", ce=1.0, wer=0.1,
                            transcription=f"line {i}", score=0.5) for i in range(3)]
    return ScoreComputed(hash=hash_, scoring_version="v2", status="COMPLETED", total_score=0.5,
                         samples=samples, timings={"load_s": 1.0}, evaluator="ev-cpu",
                         request_event_id=request, content_hash="c" * 64, manifest=_manifest())


def test_the_index_keeps_each_first_score_without_its_samples() -> None:
    index = ScoredIndex(KafkaSettings())  # its reader is not started: nothing is read
    first, later = _score("11", "r1"), _score("11", "r2")
    for payload in (first, later, _score("12", "r3")):
        index._apply(new_envelope(payload, key=payload.hash, producer="evaluator"))
    assert ("11", "v2") in index and ("12", "v2") in index and ("13", "v2") not in index
    kept = index.ledger.scores["11", "v2"][1]
    assert kept.request_event_id == "r1"  # the first score stays the one that counts
    assert (kept.samples, kept.timings, kept.manifest) == ([], {}, None)
    assert first.samples and first.manifest is not None  # the event read is left as it was
