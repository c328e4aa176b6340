"""glibc's allocator in a long-running process with many threads (an evaluator, an auditor).

glibc gives each thread an arena of its own when it first allocates, up to eight per core,
and keeps what an arena held once: librdkafka starts threads for every client, a transactional
client replaced after a broker restart starts new ones, and torch has its pool. In the hour
under faults the evaluators grew by steps of about 5 MiB after each broker restart, in arenas
of threads that came and went. Capping the arenas (``mallopt(M_ARENA_MAX)``, as the
``MALLOC_ARENA_MAX`` variable does when set before the process starts) and handing free heap
back after the work, at most every 10 s (``malloc_trim``), keep that memory in check; the
measurement is in ``docs/operations.md`` (An hour under faults). Off glibc both do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from functools import cache

M_ARENA_MAX = -8
"""``mallopt``'s parameter for the most arenas (glibc's ``malloc.h``)."""
log = logging.getLogger(__name__)


@cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt, libc.malloc_trim  # noqa: B018 - glibc only: musl has neither
    except (OSError, AttributeError):
        return None
    return libc


def limit_arenas(count: int) -> bool:
    """Let glibc's malloc use at most ``count`` arenas from now on (call it before threads
    start); 0 leaves glibc's default. Whether the limit was set."""
    libc = _libc()
    if count <= 0 or libc is None:
        return False
    applied = bool(libc.mallopt(M_ARENA_MAX, count))
    if not applied:
        log.warning("mallopt(M_ARENA_MAX, %d) refused; glibc's default arenas stay", count)
    return applied


def trim() -> bool:
    """Hand free heap at the top of every arena back to the system (``malloc_trim(0)``):
    whether any was."""
    libc = _libc()
    return libc is not None and bool(libc.malloc_trim(0))


class Trimmer:
    """Trims (:func:`trim`) after a piece of work, at most every ``every_s``: an evaluation on
    a GPU takes minutes, a tiny test scorer milliseconds, and a trim walks every arena."""

    def __init__(self, enabled: bool, every_s: float = 10.0) -> None:
        self.enabled = enabled
        self.every_s = every_s
        self._last: float | None = None
        self.trims = 0
        """How many trims ran."""

    def after_work(self, now: float) -> bool:
        """Trim if enabled and ``every_s`` has passed since the last (``now``: monotonic
        seconds); whether it trimmed."""
        if not self.enabled or (self._last is not None and now - self._last < self.every_s):
            return False
        self._last = now
        self.trims += 1
        trim()
        return True
