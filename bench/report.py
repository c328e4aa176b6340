"""Where every benchmark's figures go: a JSON file (bench/results/), echoed on the terminal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_results(result: dict[str, Any], path: Path) -> dict[str, Any]:
    """Write ``result`` to ``path`` as JSON (creating its folder), print it, return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=2)
    path.write_text(text + "\n")
    print(text)
    return result
