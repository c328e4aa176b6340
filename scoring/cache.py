"""The model cache: hub snapshots (``<cache dir>/<hash>-<commit>/``) against a disk budget.

The engine deletes a snapshot once its evaluation is over (``ResolvedModel.evict``); what an
evaluator killed mid-evaluation leaves behind stays. :func:`select_evictions` picks the least
recently used snapshots to delete until the cache fits its budget
(``SPEECHSTREAM_SCORING_CACHE_BUDGET_BYTES``), sparing any used within the last
``keep_recent_s`` (an evaluation may be reading it); ``speechstream maintenance --apply``
deletes them.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from speechstream.maintenance import Section, format_bytes, format_duration

KEEP_RECENT_S = 3600.0
"""Snapshots used within this long are never evicted from outside the engine."""


@dataclass(frozen=True)
class Snapshot:
    """One entry of the cache directory: its size and when a file of it was last used."""

    path: Path
    bytes: int
    last_used: float
    """The latest access or modification time of its files (epoch seconds)."""


def _measure(path: Path) -> tuple[int, float]:
    """(bytes, last use) of a file or a directory tree (the latest access or change of its
    files; of the directory itself when it holds none); symlinks are not followed."""
    st = path.lstat()
    if not path.is_dir() or path.is_symlink():
        return st.st_size, max(st.st_atime, st.st_mtime)
    # Files only: a directory's times change when it is listed (atime) or an entry goes.
    size, last = 0, None
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                fst = os.lstat(os.path.join(root, name))
            except FileNotFoundError:
                continue
            size += fst.st_size
            last = max(last or 0.0, fst.st_atime, fst.st_mtime)
    return size, st.st_mtime if last is None else last


def scan(cache_dir: Path) -> list[Snapshot]:
    """Every entry of ``cache_dir`` (none when it does not exist), the least recently used
    first."""
    if not cache_dir.is_dir():
        return []
    found = []
    for entry in cache_dir.iterdir():
        try:
            size, last = _measure(entry)
        except FileNotFoundError:  # evicted meanwhile
            continue
        found.append(Snapshot(entry, size, last))
    return sorted(found, key=lambda s: (s.last_used, s.path.name))


def select_evictions(snapshots: Iterable[Snapshot], budget_bytes: int, *, now: float,
                     keep_recent_s: float = KEEP_RECENT_S) -> list[Snapshot]:
    """The least recently used snapshots whose deletion brings the total to ``budget_bytes``
    or under, skipping those used within ``keep_recent_s`` of ``now`` (so the total may stay
    over budget)."""
    ordered = sorted(snapshots, key=lambda s: (s.last_used, s.path.name))
    total = sum(s.bytes for s in ordered)
    chosen: list[Snapshot] = []
    for snap in ordered:
        if total <= budget_bytes:
            break
        if now - snap.last_used < keep_recent_s:
            continue
        chosen.append(snap)
        total -= snap.bytes
    return chosen


def evict(cache_dir: Path, snapshots: Iterable[Snapshot]) -> int:
    """Delete ``snapshots`` (only entries directly in ``cache_dir``); the bytes freed."""
    freed = 0
    root = cache_dir.resolve()
    for snap in snapshots:
        if snap.path.parent.resolve() != root:
            raise ValueError(f"{snap.path} is not an entry of the cache {cache_dir}")
        if snap.path.is_dir() and not snap.path.is_symlink():
            shutil.rmtree(snap.path, ignore_errors=True)
        else:
            snap.path.unlink(missing_ok=True)
        freed += snap.bytes
    return freed


def cache_section(cache_dir: Path, budget_bytes: int, *, apply: bool,
                  keep_recent_s: float = KEEP_RECENT_S, now: float | None = None) -> Section:
    """The cache against its budget; with ``apply``, the least recently used snapshots
    evicted until it fits (those used within ``keep_recent_s`` spared)."""
    now = time.time() if now is None else now
    snapshots = scan(cache_dir)
    total = sum(s.bytes for s in snapshots)
    chosen = select_evictions(snapshots, budget_bytes, now=now, keep_recent_s=keep_recent_s)
    freed = evict(cache_dir, chosen) if apply and chosen else 0
    after = total - freed
    over = after > budget_bytes
    lines = [f"{cache_dir}: {len(snapshots)} snapshot(s), {format_bytes(total)} of a "
             f"{format_bytes(budget_bytes)} budget"]
    lines += [f"{'evicted' if apply else 'would evict'} {s.path.name} ({format_bytes(s.bytes)}, "
              f"last used {format_duration(now - s.last_used)} ago)" for s in chosen]
    if total <= budget_bytes:
        summary, action = f"{format_bytes(total)} within the budget", None
    elif apply:
        summary = (f"evicted {len(chosen)} snapshot(s), {format_bytes(freed)}; "
                   f"now {format_bytes(after)}")
        action = "deleted the least recently used snapshots (cache files only)"
        if over:
            summary += (f", still over budget: the rest were used within the last "
                        f"{format_duration(keep_recent_s)}")
            action += "; raise the budget or wait for the evaluations using them"
    else:
        summary = f"{format_bytes(total)}, over the {format_bytes(budget_bytes)} budget"
        action = (f"--apply evicts {len(chosen)} least recently used snapshot(s) "
                  f"({format_bytes(sum(s.bytes for s in chosen))})")
        if total - sum(s.bytes for s in chosen) > budget_bytes:
            action += (f"; the rest were used within the last {format_duration(keep_recent_s)} "
                       "and stay")
    return Section(
        "model cache", over, summary, lines, action,
        {"cache_dir": str(cache_dir), "budget_bytes": budget_bytes, "bytes": total,
         "bytes_after": after, "snapshots": len(snapshots),
         "evicted" if apply else "would_evict": [s.path.name for s in chosen]},
        applied=apply and bool(chosen),
    )
