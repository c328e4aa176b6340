"""Transcribers for WER: pocketsphinx (offline default), Whisper from local weights, HTTP."""

from __future__ import annotations

import urllib.error
import urllib.request
import uuid
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from scoring.audio import ASR_SAMPLE_RATE, pcm16, resample, wav_bytes
from scoring.exceptions import TranscriptionError
from speechstream.settings import ScoringSettings


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


class PocketsphinxTranscriber:
    """CMU pocketsphinx with the en-us model its package ships (no download)."""

    def __init__(self) -> None:
        from pocketsphinx import Decoder

        self.decoder = Decoder(samprate=ASR_SAMPLE_RATE, logfn="/dev/null")

    def describe(self) -> str:
        """``pocketsphinx <version> (en-us)``."""
        return f"pocketsphinx {_version('pocketsphinx')} (en-us)"

    def transcribe(self, wave: np.ndarray, sample_rate: int) -> str:
        """Decode one utterance at 16 kHz."""
        audio = resample(wave, sample_rate, ASR_SAMPLE_RATE)
        peak = float(np.abs(audio).max()) if audio.size else 0.0
        if peak > 1.0:
            audio = audio / peak
        try:
            self.decoder.start_utt()
            self.decoder.process_raw(pcm16(audio), full_utt=True)
            self.decoder.end_utt()
        except RuntimeError as exc:
            raise TranscriptionError(f"pocketsphinx failed: {exc}") from exc
        hyp = self.decoder.hyp()
        return hyp.hypstr if hyp is not None else ""

    def close(self) -> None:
        """Drop the decoder."""
        self.decoder = None


class WhisperTranscriber:
    """A Whisper checkpoint through transformers, loaded from a local directory only."""

    def __init__(self, model_path: Path, device: str = "cpu") -> None:
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        try:
            self.processor: Any = WhisperProcessor.from_pretrained(
                model_path, local_files_only=True
            )
            self.model: Any = WhisperForConditionalGeneration.from_pretrained(
                model_path, local_files_only=True, use_safetensors=True
            ).to(device)
        except (OSError, ValueError) as exc:
            raise TranscriptionError(f"cannot load Whisper from {model_path}: {exc}") from exc
        self.model.eval()
        self.device = device
        self.model_path = model_path

    def describe(self) -> str:
        """The checkpoint's directory name and the transformers version running it."""
        return f"whisper {self.model_path.name} (transformers {_version('transformers')})"

    def transcribe(self, wave: np.ndarray, sample_rate: int) -> str:
        """Greedy English transcription of one clip."""
        import torch

        audio = resample(wave, sample_rate, ASR_SAMPLE_RATE)
        features = self.processor(
            audio, sampling_rate=ASR_SAMPLE_RATE, return_tensors="pt"
        ).input_features.to(self.device, self.model.dtype)
        with torch.inference_mode():
            ids = self.model.generate(features, language="en", task="transcribe")
        return str(self.processor.batch_decode(ids, skip_special_tokens=True)[0]).strip()

    def transcribe_batch(self, clips: list[tuple[np.ndarray, int]]) -> list[str]:
        """Greedy English transcriptions of several clips in one ``generate`` (Whisper pads
        every clip to 30 s, so a batch decodes as its clips would one at a time)."""
        import torch

        audio = [resample(wave, rate, ASR_SAMPLE_RATE) for wave, rate in clips]
        features = self.processor(
            audio, sampling_rate=ASR_SAMPLE_RATE, return_tensors="pt"
        ).input_features.to(self.device, self.model.dtype)
        with torch.inference_mode():
            ids = self.model.generate(features, language="en", task="transcribe")
        return [str(text).strip()
                for text in self.processor.batch_decode(ids, skip_special_tokens=True)]

    def close(self) -> None:
        """Drop the weights."""
        self.model = None


class HttpTranscriber:
    """The original's contract: a multipart POST of a wav file answered with plain text."""

    def __init__(self, url: str, timeout_s: float = 60.0) -> None:
        self.url = url
        self.timeout_s = timeout_s

    def describe(self) -> str:
        """The service's address."""
        return f"http {self.url}"

    def transcribe(self, wave: np.ndarray, sample_rate: int) -> str:
        """POST the clip as ``file`` (audio/wav) and return the answer's text."""
        boundary = uuid.uuid4().hex
        payload = wav_bytes(wave, sample_rate)
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                f'filename="audio.wav"\r\nContent-Type: audio/wav\r\n\r\n'
            ).encode()
            + payload
            + f"\r\n--{boundary}--\r\n".encode()
        )
        request = urllib.request.Request(
            self.url,
            data=body,
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return response.read().decode("utf-8", errors="replace").strip()
        except (urllib.error.URLError, OSError) as exc:
            raise TranscriptionError(f"ASR at {self.url} failed: {exc}") from exc

    def close(self) -> None:
        """Nothing to release."""


def make_transcriber(
    settings: ScoringSettings, device: str = "cpu"
) -> PocketsphinxTranscriber | WhisperTranscriber | HttpTranscriber:
    """The transcriber the settings name."""
    if settings.asr == "http":
        if not settings.asr_url:
            raise TranscriptionError("asr=http needs SPEECHSTREAM_SCORING_ASR_URL")
        return HttpTranscriber(settings.asr_url, settings.asr_timeout_s)
    if settings.asr == "whisper":
        if settings.asr_model_path is None:
            raise TranscriptionError("asr=whisper needs SPEECHSTREAM_SCORING_ASR_MODEL_PATH")
        return WhisperTranscriber(settings.asr_model_path, device)
    return PocketsphinxTranscriber()
