"""The evaluator's index of committed scores keeps what it asks of them: their keys."""

from __future__ import annotations

import tracemalloc

from consumers.scored import ScoredIndex
from schemas.codec import decode, encode
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


def test_the_index_keeps_each_scores_key(tmp_path) -> None:
    index = ScoredIndex(KafkaSettings(), directory=tmp_path)  # its reader is not started
    for payload in (_score("11", "r1"), _score("11", "r2"), _score("12", "r3")):
        index._apply(new_envelope(payload, key=payload.hash, producer="evaluator"))
    assert ("11", "v2") in index and ("12", "v2") in index and ("13", "v2") not in index
    assert ("11", "v1") not in index and "11" not in index
    assert len(index) == 2
    index.add("13", "v2")  # committed by this evaluator
    assert ("13", "v2") in index and len(index) == 3
    assert ("v2", "13") not in index and ("13", 2) not in index
    (kept,) = tmp_path.iterdir()
    index.close()
    assert not kept.exists()


def test_a_score_costs_the_index_no_python_memory(tmp_path) -> None:
    """Kept whole, a score of three samples took 9.1 kB, and 1.7 kB without its samples: the
    hour under faults (180,000 scores) grew an evaluator past 1 GiB. Its key in a set took
    0.34 kB; on disk, nothing of Python's (RocksDB's memory is bounded: test_diskkeys)."""
    index = ScoredIndex(KafkaSettings(), directory=tmp_path)
    # Decoded first: pydantic's own cache of the strings it decodes (bounded) is not the index.
    envelopes = [decode(encode(new_envelope(_score(str(10**18 + i * 7919), f"r{i}"), key="k",
                                            producer="evaluator"))) for i in range(5000)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for envelope in envelopes:
            index._apply(envelope)
        per_score = (tracemalloc.get_traced_memory()[0] - before) / len(envelopes)
    finally:
        tracemalloc.stop()
    assert len(index) == len(envelopes)
    assert all((str(10**18 + i * 7919), "v2") in index for i in range(len(envelopes)))
    index.close()
    assert per_score < 20, f"{per_score:.0f} bytes per score"
