"""The layers are checked by import-linter (``[tool.importlinter]`` in pyproject.toml): the
tree as it is keeps every contract, and a stage importing another stage breaks one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("schemas", "speechstream", "producers", "streams", "consumers", "scoring", "sinks",
            "api", "cli", "devstack", "bench")
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=root, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(root)}, timeout=120, check=False,
    )


def test_the_tree_keeps_every_layer_contract() -> None:
    result = _lint(REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_stage_importing_another_stage_breaks_the_layers(tmp_path: Path) -> None:
    for name in PACKAGES:
        shutil.copytree(REPO_ROOT / name, tmp_path / name,
                        ignore=shutil.ignore_patterns("__pycache__", "results"))
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path)
    rules = tmp_path / "streams" / "rules.py"
    rules.write_text(rules.read_text() + "\nfrom sinks.postgres import PostgresWriter  # noqa\n")
    result = _lint(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "streams is not allowed to import sinks" in result.stdout
    assert "streams.rules -> sinks.postgres" in result.stdout
