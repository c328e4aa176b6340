"""Audio helpers: band-limited resampling, wav encoding/decoding in memory, and the compact
encodings the evaluator keeps of each clip (Ogg/Opus and MP3)."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import numpy as np
import soundfile as sf

ASR_SAMPLE_RATE = 16_000


def resample(wave: np.ndarray, sr_from: int, sr_to: int) -> np.ndarray:
    """Resample a mono float waveform with an FFT (band-limited, deterministic)."""
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    if sr_from == sr_to or wave.size == 0:
        return wave
    n_out = max(1, round(wave.size * sr_to / sr_from))
    spectrum = np.fft.rfft(wave.astype(np.float64))
    n_bins = n_out // 2 + 1
    if n_bins <= spectrum.size:
        spectrum = spectrum[:n_bins]
    else:
        spectrum = np.concatenate([spectrum, np.zeros(n_bins - spectrum.size, spectrum.dtype)])
    out = np.fft.irfft(spectrum, n=n_out) * (n_out / wave.size)
    return out.astype(np.float32)


def to_mono(wave: np.ndarray) -> np.ndarray:
    """Average the channels of a (samples, channels) array; a 1-D array is returned as is."""
    wave = np.asarray(wave, dtype=np.float32)
    return wave if wave.ndim == 1 else wave.mean(axis=1)


def wav_bytes(wave: np.ndarray, sample_rate: int) -> bytes:
    """A 16-bit PCM wav file of ``wave`` (clipped to [-1, 1])."""
    buf = io.BytesIO()
    sf.write(buf, np.clip(wave, -1.0, 1.0), sample_rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def read_wav(data: bytes) -> tuple[np.ndarray, int]:
    """Decode wav bytes into a mono float32 waveform and its sample rate."""
    wave, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
    return to_mono(wave), int(sr)


def pcm16(wave: np.ndarray) -> bytes:
    """Raw little-endian 16-bit PCM of a float waveform."""
    return (np.clip(wave, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


KEPT_SAMPLE_RATE = 24_000
"""The rate kept clips are encoded at: one Opus supports natively, MPEG-2 Layer III for MP3."""
OPUS_LEVEL = 0.93
"""libsndfile's compression level for Opus: about 24 kbit/s of speech."""
MP3_LEVEL = 0.95
"""And for MP3: about 35 kbit/s at 24 kHz."""


@dataclass(frozen=True)
class EncodedClip:
    """One clip, encoded for listening: Ogg/Opus, MP3 (for browsers that play no Opus), the
    rate both are at and its duration."""

    opus: bytes
    mp3: bytes
    sample_rate: int
    duration_s: float

    @property
    def size(self) -> int:
        """Bytes of both encodings."""
        return len(self.opus) + len(self.mp3)

    def b64(self) -> tuple[str, str]:
        """Both encodings in base64 (as events carry them)."""
        return base64.b64encode(self.opus).decode(), base64.b64encode(self.mp3).decode()


def encode_clip(wave: np.ndarray, sample_rate: int) -> EncodedClip:
    """``wave`` (mono float) resampled to :data:`KEPT_SAMPLE_RATE`, clipped to [-1, 1] and
    encoded as Ogg/Opus and as MP3."""
    kept = np.clip(resample(to_mono(wave), sample_rate, KEPT_SAMPLE_RATE), -1.0, 1.0)
    if kept.size == 0:
        raise ValueError("an empty clip has nothing to encode")
    out: list[bytes] = []
    for fmt, subtype, level in (("OGG", "OPUS", OPUS_LEVEL), ("MP3", "MPEG_LAYER_III", MP3_LEVEL)):
        buf = io.BytesIO()
        sf.write(buf, kept, KEPT_SAMPLE_RATE, format=fmt, subtype=subtype,
                 compression_level=level)
        out.append(buf.getvalue())
    return EncodedClip(out[0], out[1], KEPT_SAMPLE_RATE, kept.size / KEPT_SAMPLE_RATE)
