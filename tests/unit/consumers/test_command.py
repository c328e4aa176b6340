"""`speechstream evaluator run`'s scorer loading."""

from __future__ import annotations

import pytest

from consumers.exceptions import ScorerLoadError
from speechstream.commands.evaluator import load_scorer
from tests.scorers import FailingScorer, SlowScorer


def test_loads_a_scorer_class_by_module_and_name() -> None:
    assert isinstance(load_scorer("tests.scorers:SlowScorer", "cpu"), SlowScorer)
    assert isinstance(load_scorer("tests.scorers:FailingScorer", "cuda:0"), FailingScorer)


@pytest.mark.parametrize("spec", ["nonsense", "tests.scorers:Missing", "no_such_module:X"])
def test_bad_scorer_spec_is_a_clear_error(spec: str) -> None:
    with pytest.raises(ScorerLoadError):
        load_scorer(spec, "cpu")
