"""Parler-TTS end to end: a tiny Parler model built in the Parler environment (.venv-parler) is
scored from this environment by consumers.tts.TTSScorer, which hands it to that environment."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from consumers.tts import TTSScorer
from scoring.types import Submission
from speechstream.settings import PARLER_SETUP, ScoringSettings

REPO_ROOT = Path(__file__).resolve().parents[2]
PARLER_PYTHON = REPO_ROOT / ".venv-parler" / "bin" / "python"  # where the setup script puts it

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not PARLER_PYTHON.exists(),
        reason=f"no Parler environment at {PARLER_PYTHON}; create it with `{PARLER_SETUP}`",
    ),
]


@pytest.fixture(scope="module")
def parler_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<root>/alice/parler-tiny``: a random tiny Parler-TTS model, built by the Parler env."""
    root = tmp_path_factory.mktemp("parler-models")
    subprocess.run(
        [
            str(PARLER_PYTHON),
            "-m",
            "devstack.tiny.parler",
            str(root / "alice" / "parler-tiny"),
            "--seed",
            "1",
        ],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        timeout=300,
    )
    return root


def _submission() -> Submission:
    return Submission(hash="18358495043599921355", repo_namespace="alice",
                      repo_name="parler-tiny")


def test_parler_model_is_scored_in_the_parler_environment(parler_root: Path) -> None:
    settings = ScoringSettings(models_root=parler_root, n_samples=2, max_audio_s=1.0,
                               parler_python=PARLER_PYTHON)
    scorer = TTSScorer(settings)
    scorer.start()
    totals: list[float | None] = []
    for _ in range(2):
        statuses: list[str] = []
        outcome = scorer.score(_submission(), lambda s, n, seen=statuses: seen.append(s))
        assert outcome.status == "COMPLETED", outcome.reason
        assert outcome.total_score is not None and 0.0 <= outcome.total_score <= 1.0
        assert len(outcome.samples) == 2
        assert all(s.ce is not None and s.wer is not None for s in outcome.samples)
        assert statuses == ["RUNNING"]  # the first child stopped at its prechecks
        totals.append(outcome.total_score)
    scorer.close()
    assert totals[0] == totals[1]
