"""Dead letters are counted by consumer and a bounded kind of reason, taken from the reasons the
services really give."""

from __future__ import annotations

import json
import random

import pytest
from prometheus_client import CollectorRegistry, Counter

from schemas.codec import MAX_EVENT_BYTES, dead_letter, encode
from schemas.events import ChainBlock, EvaluationRequested
from speechstream.exceptions import DecodeError
from speechstream.kafka.records import (
    DEAD_LETTER_LABELS,
    REASON_KINDS,
    count_dead_letters,
    decode_record,
    reason_kind,
    unprocessable_reason,
)
from tests.metric_support import counted
from tests.unit.consumers.fakes import request_envelope

GOOD = encode(request_envelope())


def _reason(raw: bytes | None, expected: type | None = EvaluationRequested,
            verify: object = None) -> str:
    with pytest.raises(DecodeError) as caught:
        decode_record(raw, "t", 0, 1, expected, verify=verify)  # type: ignore[arg-type]
    return caught.value.reason


@pytest.mark.parametrize(("raw", "kind"), [
    (None, "empty"),
    (b"\xff\xfe not json", "not_json"),
    (b"[1, 2]", "not_envelope"),
    (b'{"hello": 1}', "not_envelope"),
    (b'{"schema_version": 99, "payload": {}}', "schema_version"),
    (b"x" * (MAX_EVENT_BYTES + 1), "oversize"),
])
def test_each_undecodable_record_gets_its_kind(raw: bytes | None, kind: str) -> None:
    assert reason_kind(_reason(raw)) == kind


def test_a_schema_violation_a_wrong_type_and_an_untrusted_record() -> None:
    doc = json.loads(GOOD)
    doc["payload"]["block"] = "soon"
    assert reason_kind(_reason(json.dumps(doc).encode())) == "schema_violation"
    assert reason_kind(_reason(GOOD, expected=ChainBlock)) == "wrong_type"
    assert reason_kind(_reason(GOOD, verify=lambda *_: "unsigned")) == "untrusted"


def test_unprocessable_and_unstorable() -> None:
    reason = unprocessable_reason(ValueError("no\nmore"), consumer="speechstream-evaluator")
    assert reason_kind(reason) == "unprocessable"
    assert reason_kind("the sink cannot store it: value out of range") == "unstorable"
    assert reason_kind("something new") == "other"


def test_whatever_a_record_holds_the_kinds_stay_few() -> None:
    """The reason quotes the record (a type name, a field's message); the label never does."""
    rng = random.Random(3)
    seen = set()
    for _ in range(300):
        doc = json.loads(GOOD)
        doc["payload"]["type"] = "".join(rng.choice("ab{}\" :") for _ in range(12))
        raw = rng.choice([json.dumps(doc).encode(), rng.randbytes(40)])
        seen.add(reason_kind(_reason(raw)))
    assert seen <= REASON_KINDS


def test_count_dead_letters_labels_by_consumer_and_kind() -> None:
    counter = Counter("t_dead_letters", "d", DEAD_LETTER_LABELS, registry=CollectorRegistry())
    letters = [dead_letter(b"x", _reason(b"x"), topic="t", partition=0, offset=i,
                           consumer="speechstream-streams") for i in range(2)]
    letters.append(dead_letter(GOOD, "untrusted: unsigned", topic="t", partition=0, offset=3,
                               consumer="speechstream-sink"))
    letters.append(request_envelope())  # not a dead letter: not counted
    count_dead_letters(counter, letters)
    assert counted(counter) == {("speechstream-streams", "not_json"): 2,
                                ("speechstream-sink", "untrusted"): 1}
