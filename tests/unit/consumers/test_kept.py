"""Results kept until committed: on disk for a successor, bounded, and never trusted when
unreadable, stale or for another submission."""

from __future__ import annotations

import os
import time
from pathlib import Path

from consumers.kept import KeptResults
from scoring.types import ScoringResult

RESULT = ScoringResult(status="COMPLETED", total_score=0.5, method_scores={"ce_wer": 0.5})


def test_a_successor_reads_what_was_kept_and_a_commit_removes_it(tmp_path: Path) -> None:
    first = KeptResults(tmp_path)
    assert first.start() == 0
    first.put("req-1", "123", "v2", RESULT, 4.5)
    successor = KeptResults(tmp_path)
    assert successor.start() == 1
    assert successor.get("req-1", "123", "v2") == (RESULT, 4.5)
    assert successor.get("req-1", "123", "v1") is None  # another version: not this result
    assert successor.get("req-1", "999", "v2") is None
    successor.drop("req-1")
    assert list(tmp_path.iterdir()) == [] and KeptResults(tmp_path).start() == 0


def test_unreadable_and_stale_files_are_removed(tmp_path: Path) -> None:
    kept = KeptResults(tmp_path, max_age_s=3600)
    kept.put("req-old", "1", "v2", RESULT, 1.0)
    kept.put("req-new", "2", "v2", RESULT, 1.0)
    old = time.time() - 7200
    os.utime(tmp_path / "req-old.json", (old, old))
    (tmp_path / "torn.json").write_text('{"request_event_id": "req-3", "hash"')
    successor = KeptResults(tmp_path, max_age_s=3600)
    assert successor.start() == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["req-new.json"]


def test_at_most_limit_results_are_kept_the_oldest_dropped(tmp_path: Path) -> None:
    kept = KeptResults(tmp_path, limit=2)
    for i in range(3):
        kept.put(f"req-{i}", str(i), "v2", RESULT, 1.0)
    assert len(kept) == 2 and kept.get("req-0", "0", "v2") is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["req-1.json", "req-2.json"]


def test_an_odd_event_id_gets_a_safe_file_name(tmp_path: Path) -> None:
    kept = KeptResults(tmp_path)
    kept.put("../../etc/x", "1", "v2", RESULT, 1.0)
    (name,) = [p.name for p in tmp_path.iterdir()]
    assert "/" not in name and name.endswith(".json") and len(name) == 64 + 5
    assert KeptResults(tmp_path).start() == 1


def test_in_memory_only_without_a_directory() -> None:
    kept = KeptResults()
    assert kept.start() == 0
    kept.put("req-1", "1", "v2", RESULT, 2.0)
    assert kept.get("req-1", "1", "v2") == (RESULT, 2.0)
