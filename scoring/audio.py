"""Audio helpers: band-limited resampling and wav encoding/decoding in memory."""

from __future__ import annotations

import io

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
