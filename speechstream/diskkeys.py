"""A set of keys kept on disk, in RocksDB (``rocksdict``), so that a service whose state grows
with the log keeps a bounded resident memory.

An evaluator holds the key of every committed score (``consumers.scored``): in a Python set
they took 0.34 kB each, 60 MiB per 180,000 scores, and an evaluator's memory grew with the
log. Here they take no Python memory; RocksDB's own is bounded by :data:`MEMTABLE_BYTES`
(times :data:`MEMTABLES`) and :data:`BLOCK_CACHE_BYTES`, the index and filter blocks counted
in that cache.

The set is rebuilt by its owner at each start (from the log), so it lives in a directory of
its own that :meth:`DiskKeys.close` removes. A process killed before that leaves its
directory behind; the next :class:`DiskKeys` created under the same parent removes every such
directory whose process is gone (the directory's name carries its process id).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

from rocksdict import BlockBasedOptions, Cache, Options, Rdict

log = logging.getLogger(__name__)

MEMTABLE_BYTES = 2 * 1024 * 1024
"""The size of RocksDB's write buffer (the keys written since the last flush to disk)."""
MEMTABLES = 2
"""Write buffers at most in memory (one filling while the other is flushed)."""
BLOCK_CACHE_BYTES = 4 * 1024 * 1024
"""RocksDB's cache of blocks read from disk, index and bloom-filter blocks included."""
_OWNED = re.compile(r"-(\d+)-[^-]+$")


def bounded_options() -> Options:
    """RocksDB options whose memory stays within the bounds above, whatever the data's size;
    keys and values are raw bytes."""
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    options.set_write_buffer_size(MEMTABLE_BYTES)
    options.set_max_write_buffer_number(MEMTABLES)
    options.set_max_open_files(64)
    table = BlockBasedOptions()
    table.set_block_cache(Cache(BLOCK_CACHE_BYTES))
    table.set_cache_index_and_filter_blocks(True)
    table.set_bloom_filter(10, True)
    options.set_block_based_table_factory(table)
    return options


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_abandoned(parent: Path, prefix: str) -> list[Path]:
    """Remove the directories under ``parent`` named ``<prefix><pid>-…`` whose process is gone;
    return them."""
    removed = []
    for path in parent.glob(f"{prefix}*"):
        owner = _OWNED.search(path.name)
        if path.is_dir() and owner is not None and not _alive(int(owner.group(1))):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    if removed:
        log.info("removed %d key sets left by processes that are gone", len(removed))
    return removed


class DiskKeys:
    """A set of ``bytes`` keys in a RocksDB of its own under ``parent`` (the system's temporary
    directory unless given), removed by :meth:`close`."""

    def __init__(self, name: str, parent: Path | None = None) -> None:
        parent = Path(parent or tempfile.gettempdir())
        parent.mkdir(parents=True, exist_ok=True)
        prefix = f"speechstream-{name}-"
        sweep_abandoned(parent, prefix)
        self.path = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=parent))
        self._db: Rdict | None = Rdict(str(self.path), bounded_options())
        self._count = 0

    def _open(self) -> Rdict:
        if self._db is None:
            raise ValueError(f"the key set in {self.path} is closed")
        return self._db

    def add(self, key: bytes) -> None:
        """Add ``key`` (a no-op if it is there)."""
        db = self._open()
        if db.get(key) is None:
            db.put(key, b"")
            self._count += 1

    def __contains__(self, key: object) -> bool:
        return isinstance(key, bytes) and self._open().get(key) is not None

    def __len__(self) -> int:
        return self._count

    def close(self) -> None:
        """Close the database and remove its directory."""
        if self._db is not None:
            self._db.close()
            self._db = None
        shutil.rmtree(self.path, ignore_errors=True)
