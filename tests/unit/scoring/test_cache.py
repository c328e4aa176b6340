"""The model cache: sizes, last use, which snapshots go to fit the budget, and eviction."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from scoring.cache import Snapshot, cache_section, evict, scan, select_evictions

NOW = 1_000_000.0
HOUR = 3600.0


def _snap(name: str, size: int, age_s: float) -> Snapshot:
    return Snapshot(Path("/cache") / name, size, NOW - age_s)


def test_the_least_recently_used_go_first_until_the_cache_fits() -> None:
    snaps = [_snap("new", 40, 2 * HOUR), _snap("old", 30, 9 * HOUR),
             _snap("mid", 30, 5 * HOUR)]
    assert [s.path.name for s in select_evictions(snaps, 70, now=NOW)] == ["old"]
    assert [s.path.name for s in select_evictions(snaps, 40, now=NOW)] == ["old", "mid"]
    assert select_evictions(snaps, 100, now=NOW) == []
    assert len(select_evictions(snaps, 0, now=NOW)) == 3


def test_recently_used_snapshots_are_spared_even_over_budget() -> None:
    snaps = [_snap("busy", 100, 60), _snap("old", 10, 9 * HOUR)]
    chosen = select_evictions(snaps, 0, now=NOW, keep_recent_s=HOUR)
    assert [s.path.name for s in chosen] == ["old"]


def _fake_snapshot(root: Path, name: str, size: int, age_s: float) -> Path:
    path = root / name
    (path / "sub").mkdir(parents=True)
    for i, part in enumerate((size // 2, size - size // 2)):
        f = path / ("model.safetensors" if i == 0 else "sub/config.json")
        f.write_bytes(b"x" * part)
        os.utime(f, (NOW - age_s, NOW - age_s))
    return path


def test_scan_measures_trees_and_orders_by_last_use(tmp_path: Path) -> None:
    _fake_snapshot(tmp_path, "b-1", 100, HOUR)
    _fake_snapshot(tmp_path, "a-2", 50, 3 * HOUR)
    found = scan(tmp_path)
    assert [(s.path.name, s.bytes, s.last_used) for s in found] == [
        ("a-2", 50, NOW - 3 * HOUR), ("b-1", 100, NOW - HOUR)]
    assert scan(tmp_path / "missing") == []


def test_evict_deletes_only_entries_of_the_cache(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    keep = _fake_snapshot(cache, "keep", 10, HOUR)
    gone = _fake_snapshot(cache, "gone", 10, HOUR)
    assert evict(cache, [Snapshot(gone, 10, 0)]) == 10
    assert not gone.exists() and keep.exists()
    outside = _fake_snapshot(tmp_path, "outside", 10, HOUR)
    with pytest.raises(ValueError, match="not an entry of the cache"):
        evict(cache, [Snapshot(outside, 10, 0)])
    assert outside.exists()


def test_the_section_lists_then_applies(tmp_path: Path) -> None:
    for i, age in enumerate((5 * HOUR, 3 * HOUR, 2 * HOUR)):
        _fake_snapshot(tmp_path, f"s{i}", 1000, age)
    listed = cache_section(tmp_path, 1500, apply=False, now=NOW)
    assert listed.needs_hand and listed.data["would_evict"] == ["s0", "s1"]
    assert "--apply evicts 2" in (listed.action or "")
    assert len(list(tmp_path.iterdir())) == 3
    applied = cache_section(tmp_path, 1500, apply=True, now=NOW)
    assert not applied.needs_hand and applied.data["evicted"] == ["s0", "s1"]
    assert applied.applied and not listed.applied
    assert [p.name for p in tmp_path.iterdir()] == ["s2"]
    fits = cache_section(tmp_path, 1500, apply=True, now=NOW)
    assert not fits.needs_hand and fits.action is None and fits.data["evicted"] == []


def test_still_over_budget_after_apply_when_the_rest_is_in_use(tmp_path: Path) -> None:
    _fake_snapshot(tmp_path, "busy", 1000, 60)
    s = cache_section(tmp_path, 10, apply=True, now=NOW, keep_recent_s=HOUR)
    assert s.needs_hand and "still over budget" in s.summary
    assert (tmp_path / "busy").exists()
