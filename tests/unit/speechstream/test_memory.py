"""glibc's arenas capped and free heap handed back (speechstream/memory.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from speechstream import memory
from speechstream.memory import Trimmer

glibc = pytest.mark.skipif(memory._libc() is None, reason="glibc's malloc only")

# Eight threads allocate at once; malloc_info lists the arenas (<heap nr=...>) afterwards.
ARENAS = textwrap.dedent("""
    import ctypes, sys, threading
    from speechstream.memory import limit_arenas
    limit_arenas(int(sys.argv[1]))
    libc = ctypes.CDLL("libc.so.6")
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    barrier, kept = threading.Barrier(8), []
    def work():
        barrier.wait()
        kept.append([bytearray(64 * 1024) for _ in range(20)])
        barrier.wait()
    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads: t.start()
    for t in threads: t.join()
    out = libc.fopen(sys.argv[2].encode(), b"w")
    libc.malloc_info(0, out)
    libc.fclose(out)
""")


def _arenas(limit: int, tmp_path: Path) -> int:
    info = tmp_path / f"malloc-{limit}.xml"
    subprocess.run([sys.executable, "-c", ARENAS, str(limit), str(info)], check=True,
                   cwd=Path(__file__).resolve().parents[3], timeout=60)
    return info.read_text().count("<heap nr=")


@glibc
def test_the_limit_caps_the_arenas_of_threads_that_start_after_it(tmp_path: Path) -> None:
    assert _arenas(0, tmp_path) > 2  # glibc's default: an arena per thread, up to 8 per core
    assert _arenas(2, tmp_path) == 2
    assert _arenas(1, tmp_path) == 1


def test_no_limit_is_glibcs_default() -> None:
    assert memory.limit_arenas(0) is False


def test_the_trimmer_trims_at_most_every_interval_and_not_when_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[bool] = []
    monkeypatch.setattr(memory, "trim", lambda: calls.append(True) or True)
    trimmer = Trimmer(True, every_s=10.0)
    assert [trimmer.after_work(t) for t in (100.0, 105.0, 110.0, 111.0)] == [
        True, False, True, False]
    assert trimmer.trims == len(calls) == 2
    off = Trimmer(False)
    assert not off.after_work(100.0) and len(calls) == 2

