"""The Parler evaluator image: a tiny Parler-TTS model, built by the image's Parler environment
(``/opt/parler``), is scored COMPLETED by the image's evaluator code, which hands it to that
environment, as the non-root user and with no network.

Needs a Docker engine and the image (``speechstream dev images evaluator parler``); runs only
with ``SPEECHSTREAM_TEST_CONTAINERS=1`` (marked ``containers``).
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from devstack.images import images

pytestmark = [
    pytest.mark.containers,
    pytest.mark.skipif(os.environ.get("SPEECHSTREAM_TEST_CONTAINERS") != "1",
                       reason="SPEECHSTREAM_TEST_CONTAINERS=1 runs the container tests"),
]

SCORE_A_TINY_PARLER_MODEL = """
import json, os, pathlib, subprocess, tempfile
from consumers.tts import TTSScorer
from scoring.types import Submission
from speechstream.settings import ScoringSettings

root = pathlib.Path(tempfile.mkdtemp())
parler = os.environ["SPEECHSTREAM_SCORING_PARLER_PYTHON"]
subprocess.run([parler, "-m", "devstack.tiny.parler", str(root / "alice" / "parler-tiny"),
                "--seed", "1"], check=True, capture_output=True)
scorer = TTSScorer(ScoringSettings(models_root=root, n_samples=2, max_audio_s=1.0))
scorer.start()
out = scorer.score(Submission(hash="18358495043599921355", repo_namespace="alice",
                              repo_name="parler-tiny"), lambda status, note: None)
scorer.close()
print(json.dumps({"status": out.status, "reason": out.reason, "total": out.total_score,
                  "samples": len(out.samples), "user": os.getuid()}))
"""


def test_the_parler_image_scores_a_tiny_parler_model() -> None:
    tag = next(image.tag for image in images() if image.key == "parler")
    proc = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--entrypoint", "python3", tag,
         "-c", SCORE_A_TINY_PARLER_MODEL],
        capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["status"] == "COMPLETED", result["reason"]
    assert result["total"] is not None and 0.0 <= result["total"] <= 1.0
    assert result["samples"] == 2
    assert result["user"] == 10001
