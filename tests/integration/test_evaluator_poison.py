"""No request stops an evaluator (a real broker): one that decodes but whose handling raises
is dead-lettered with the reason and its offset, in one transaction, and its neighbours are
scored."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest

from consumers.base import Scorer
from consumers.settings import EvaluatorSettings
from schemas.codec import decode
from schemas.events import DeadLetter
from scoring.types import Report, ScoringResult, Submission
from speechstream.settings import KafkaSettings
from tests.integration.test_evaluator import (  # noqa: F401 - the fixtures
    committed_offsets,
    evaluator_settings,
    publish,
    read_until,
    request,
    run_evaluator,
    scores_of,
)
from tests.scorers import DeterministicScorer

pytestmark = pytest.mark.integration


class NoteScorer(DeterministicScorer):
    """Reports RUNNING with a note no status event can hold (a NUL byte) for the hashes in
    ``poison``: the evaluator's own status event cannot be built (it used to raise out of the
    loop, and again at every restart)."""

    def __init__(self, poison: set[str]) -> None:
        super().__init__()
        self.poison = poison

    def score(self, submission: Submission, report: Report) -> ScoringResult:
        if submission.hash in self.poison:
            report("RUNNING", "loading \x00")
        return super().score(submission, report)


def test_a_request_the_evaluator_cannot_process_is_dead_lettered_and_the_rest_scored(
    kafka_settings: KafkaSettings, evaluator_settings: EvaluatorSettings,  # noqa: F811
    run_evaluator: Callable[[Scorer], None],  # noqa: F811
) -> None:
    before, poison, after = request("tts-before"), request("tts-poison"), request("tts-after")
    assert before.key and poison.key and after.key
    publish(kafka_settings, before, poison, after)  # one hash each: maybe three partitions
    run_evaluator(NoteScorer({poison.key}))

    letters = read_until(kafka_settings, kafka_settings.topics.deadletter, bool)
    (letter,) = [e.payload for e in letters]
    assert isinstance(letter, DeadLetter)
    assert letter.topic == kafka_settings.topics.evaluation_requests
    assert letter.consumer == "speechstream-evaluator"
    assert letter.error.startswith("speechstream-evaluator cannot process it: ValidationError")
    assert decode(base64.b64decode(letter.raw_b64)) == poison

    scores = read_until(kafka_settings, kafka_settings.topics.scores,
                        lambda seen: len(seen) >= 2)
    assert len(scores_of(scores, before.key)) == 1 and len(scores_of(scores, after.key)) == 1
    assert scores_of(scores, poison.key) == []
    assert committed_offsets(kafka_settings, evaluator_settings.group_id) == 3
