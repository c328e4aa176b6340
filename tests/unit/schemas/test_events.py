"""Bounds of the clip event: the largest one an evaluator may write fits a record."""

from __future__ import annotations

import pytest

from schemas.codec import MAX_EVENT_BYTES, decode, encode
from schemas.envelope import new_envelope
from schemas.events import MAX_AUDIO_BYTES, SampleAudio
from schemas.trust import SIGNATURE_BYTES


def test_the_largest_clip_event_fits_a_record() -> None:
    largest = "A" * ((MAX_AUDIO_BYTES + 2) // 3 * 4)
    event = SampleAudio(hash="1" * 20, scoring_version="v" * 32, evaluator="e" * 128,
                        score_event_id="s" * 64, request_event_id="r" * 64, index=999,
                        clip="reference", sample_rate=48_000, duration_s=600.0,
                        opus_b64=largest, mp3_b64=largest)
    raw = encode(new_envelope(event, key="1" * 20, producer="p" * 64, event_id="i" * 64))
    assert len(raw) + SIGNATURE_BYTES < MAX_EVENT_BYTES
    assert decode(raw).payload == event
    with pytest.raises(ValueError):
        SampleAudio(**{**event.model_dump(), "opus_b64": largest + "AAAA"})
    with pytest.raises(ValueError):
        SampleAudio(**{**event.model_dump(), "mp3_b64": "not base64!"})
