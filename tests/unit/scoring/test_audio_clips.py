"""The clips the evaluator keeps: both encodings decode to the clip's length at 24 kHz, and
stay well under the event's limit at the longest sample."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from schemas.events import MAX_AUDIO_BYTES
from scoring.audio import KEPT_SAMPLE_RATE, encode_clip


def _noise(seconds: float, rate: int) -> np.ndarray:
    return np.random.default_rng(0).uniform(-0.5, 0.5, int(seconds * rate)).astype(np.float32)


@pytest.mark.parametrize("rate", [16_000, 24_000, 32_000, 44_100])
def test_both_encodings_decode_to_the_clip(rate: int) -> None:
    clip = encode_clip(_noise(1.25, rate), rate)
    assert clip.sample_rate == KEPT_SAMPLE_RATE
    assert clip.duration_s == pytest.approx(1.25, abs=1e-3)
    for data, fmt in ((clip.opus, "OGG"), (clip.mp3, "MP3")):
        info = sf.info(io.BytesIO(data))
        assert info.format == fmt and info.samplerate == KEPT_SAMPLE_RATE
        wave, _ = sf.read(io.BytesIO(data), dtype="float32")
        assert abs(len(wave) / KEPT_SAMPLE_RATE - 1.25) < 0.06  # MP3 pads a frame at most


def test_the_longest_sample_of_noise_fits_the_event() -> None:
    # White noise at full scale is the worst case for a codec; the longest sample is 8 s.
    clip = encode_clip(_noise(8.0, 24_000) * 2, 24_000)
    assert max(len(clip.opus), len(clip.mp3)) < MAX_AUDIO_BYTES


def test_an_empty_clip_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        encode_clip(np.zeros(0, dtype=np.float32), 24_000)
