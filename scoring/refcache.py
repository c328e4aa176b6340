"""Reference audio, computed once: a content-addressed cache on disk, shared by the evaluators
of one machine.

The reference of a text never changes for a given reference voice (its backend, version and
settings: ``describe()``, plus the audio length an HTTP service is asked for), so it is kept
under the sha256 of those, losslessly (the float32 samples as computed, ``.npz``): a score is
bit-identical with and without the cache. Entries are written to a temporary file and renamed
into place, so a reader sees a whole entry or none; one that cannot be read is a miss and is
removed. A hit refreshes the entry's modification time; after a write, while the directory is
over its byte budget, the least recently used entries are removed (under a lock file, so two
evaluators do not evict at once; removing a file another process reads is harmless on POSIX).
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import logging
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from scoring.base import ReferenceVoice

FORMAT = 1
"""Changes when the stored form does; part of every key."""
log = logging.getLogger(__name__)


def voice_identity(voice: ReferenceVoice) -> str:
    """What makes a voice's audio what it is: its description and, for a service, the audio
    length it is asked for."""
    identity = voice.describe()
    length = getattr(voice, "max_audio_length_ms", None)
    return identity if length is None else f"{identity}; max_audio_length_ms={length}"


def key_of(text: str, identity: str) -> str:
    """The entry of ``text`` spoken by the voice ``identity`` (:func:`voice_identity`)."""
    canonical = json.dumps({"format": FORMAT, "text": text, "voice": identity},
                           sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


class ReferenceCache:
    """Entries ``<directory>/<key[:2]>/<key>.npz`` within ``budget_bytes``."""

    def __init__(self, directory: Path, budget_bytes: int) -> None:
        self.directory = directory
        self.budget_bytes = budget_bytes

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.npz"

    def get(self, key: str) -> tuple[np.ndarray, int] | None:
        """The waveform and sample rate kept under ``key``; None on a miss."""
        path = self._path(key)
        try:
            with np.load(path, allow_pickle=False) as entry:
                wave, rate = entry["wave"], int(entry["sample_rate"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            log.warning("reference cache: dropping unreadable %s: %s", path.name, exc)
            try:
                path.unlink(missing_ok=True)
            except OSError:
                pass  # a miss all the same; the next put replaces it
            return None
        try:
            os.utime(path)
        except OSError:
            pass  # evicted meanwhile; the audio read is whole all the same
        return wave, rate

    def put(self, key: str, wave: np.ndarray, sample_rate: int) -> None:
        """Keep ``wave`` under ``key``, then evict to the budget; a disk error is logged, not
        raised (the evaluation has its audio)."""
        path = self._path(key)
        buffer = io.BytesIO()
        np.savez(buffer, wave=np.asarray(wave), sample_rate=np.int64(sample_rate))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".ref-", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(buffer.getvalue())
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            self.evict()
        except OSError as exc:
            log.warning("reference cache: cannot keep %s: %s", key[:12], exc)

    def entries(self) -> list[tuple[Path, int, float]]:
        """Every entry: path, bytes, last use (modification time)."""
        found = []
        for path in self.directory.glob("*/*.npz"):
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            found.append((path, st.st_size, st.st_mtime))
        return found

    def evict(self) -> int:
        """Remove least recently used entries until the cache fits its budget; how many."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            entries = sorted(self.entries(), key=lambda e: e[2])
            total = sum(size for _, size, _ in entries)
            removed = 0
            for path, size, _ in entries:
                if total <= self.budget_bytes:
                    break
                path.unlink(missing_ok=True)
                total -= size
                removed += 1
            return removed


class CachedReferenceVoice:
    """A reference voice behind a :class:`ReferenceCache`; ``last_hit`` says whether the last
    :meth:`synthesize` came from the cache."""

    def __init__(self, voice: ReferenceVoice, cache: ReferenceCache) -> None:
        self.voice = voice
        self.cache = cache
        self.identity = voice_identity(voice)
        self.last_hit = False

    def describe(self) -> str:
        """The voice's own description (the manifest's ``reference_voice``)."""
        return self.voice.describe()

    def synthesize(self, text: str) -> tuple[np.ndarray, int]:
        """The cached audio of ``text``, else the voice's, kept for next time."""
        key = key_of(text, self.identity)
        found = self.cache.get(key)
        self.last_hit = found is not None
        if found is not None:
            return found
        wave, rate = self.voice.synthesize(text)
        self.cache.put(key, wave, rate)
        return wave, rate

    def close(self) -> None:
        """Close the voice."""
        self.voice.close()
