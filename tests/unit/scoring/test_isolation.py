"""Isolation: architectures of another environment are handed to it, or FAILED when it is absent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scoring.exceptions import ElsewhereError
from scoring.isolation import run_isolated
from scoring.models import check_architecture, parler_available
from scoring.types import Submission
from speechstream.settings import PARLER_SETUP, ScoringSettings
from tests.unit.scoring.conftest import fast_settings


def _as_parler(repo: Path) -> None:
    config = json.loads((repo / "config.json").read_text())
    config["architectures"] = ["ParlerTTSForConditionalGeneration"]
    (repo / "config.json").write_text(json.dumps(config))


def test_parler_is_elsewhere_in_the_main_environment() -> None:
    if parler_available():
        pytest.skip("this interpreter is the Parler environment")
    with pytest.raises(ElsewhereError) as info:
        check_architecture(["ParlerTTSForConditionalGeneration"])
    assert info.value.environment == "parler"


def test_missing_parler_environment_is_failed_with_the_setup_command(repo_copy: Path) -> None:
    _as_parler(repo_copy)
    settings = fast_settings(repo_copy.parents[1], parler_python=repo_copy / "no-python")
    statuses: list[str] = []
    result = run_isolated(
        settings,
        Submission(hash="1", repo_namespace="carol", repo_name="crafted"),
        report=lambda s, n: statuses.append(s),
    )
    assert result.status == "FAILED"
    assert result.failure_code == "ARCHITECTURE_ELSEWHERE"
    assert result.reason and PARLER_SETUP in result.reason
    assert statuses == []  # stopped at the prechecks, before RUNNING


def test_settings_reach_the_child_with_their_secrets() -> None:
    settings = ScoringSettings(hf_token="s3cret", reference_api_key="k3y")  # type: ignore[arg-type]
    payload = settings.child_payload()
    assert payload["hf_token"] == "s3cret" and payload["reference_api_key"] == "k3y"
    assert ScoringSettings(**payload) == settings
