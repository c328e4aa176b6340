"""The evaluator's scorer loading (``--scorer``)."""

from __future__ import annotations

import pytest

from consumers.exceptions import ScorerLoadError
from consumers.scorers import load_scorer
from consumers.tts import TTSScorer
from speechstream.settings import ScoringSettings
from tests.scorers import FailingScorer, SlowScorer

SCORING = ScoringSettings(n_samples=3)


def test_loads_a_scorer_class_by_module_and_name() -> None:
    assert isinstance(load_scorer("tests.scorers:SlowScorer", "cpu", SCORING), SlowScorer)
    assert isinstance(load_scorer("tests.scorers:FailingScorer", "cuda:0", SCORING),
                      FailingScorer)


def test_the_tts_scorer_gets_the_settings_read_at_the_edge() -> None:
    scorer = load_scorer("tts", "cuda:1", SCORING)
    assert isinstance(scorer, TTSScorer)
    assert (scorer.settings, scorer.device) == (SCORING, "cuda:1")


@pytest.mark.parametrize("spec", ["nonsense", "tests.scorers:Missing", "no_such_module:X"])
def test_bad_scorer_spec_is_a_clear_error(spec: str) -> None:
    with pytest.raises(ScorerLoadError):
        load_scorer(spec, "cpu", SCORING)
