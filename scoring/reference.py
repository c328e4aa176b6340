"""Reference voices: the original's HTTP contract and an offline one (flite slt, espeak-ng)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from scoring.audio import read_wav
from scoring.exceptions import ReferenceVoiceError
from speechstream.settings import ScoringSettings


def _version_in(text: str) -> str:
    """The first version-looking word of a ``--version`` output (``2.2``, ``1.51``)."""
    match = re.search(r"(\d+\.\d+(?:\.\d+)?)", text)
    return match.group(1) if match else "unknown"


class OfflineReferenceVoice:
    """Debian's ``flite -voice slt`` (16 kHz); ``espeak-ng`` when flite is absent."""

    def __init__(self, timeout_s: float = 60.0) -> None:
        self.timeout_s = timeout_s
        self.flite = shutil.which("flite")
        self.espeak = shutil.which("espeak-ng")
        if not self.flite and not self.espeak:
            raise ReferenceVoiceError("neither flite nor espeak-ng is installed")
        self._description: str | None = None

    def _command(self, text: str, out: Path) -> list[str]:
        if self.flite:
            return [self.flite, "-voice", "slt", "-t", text, "-o", str(out)]
        assert self.espeak is not None
        return [self.espeak, "-v", "en-us", "-w", str(out), text]

    def describe(self) -> str:
        """``flite <version> (slt)`` or ``espeak-ng <version> (en-us)``."""
        if self._description is None:
            program = self.flite or self.espeak
            assert program is not None
            try:
                out = subprocess.run([program, "--version"], capture_output=True, text=True,
                                     timeout=self.timeout_s).stdout
            except (subprocess.SubprocessError, OSError):
                out = ""
            version = _version_in(out)
            self._description = (f"flite {version} (slt)" if self.flite
                                 else f"espeak-ng {version} (en-us)")
        return self._description

    def synthesize(self, text: str) -> tuple[np.ndarray, int]:
        """Speak ``text`` into a temporary wav, read it, delete it."""
        with tempfile.TemporaryDirectory(prefix="speechstream-ref-") as tmp:
            out = Path(tmp) / "ref.wav"
            cmd = self._command(text, out)
            try:
                subprocess.run(cmd, check=True, capture_output=True, timeout=self.timeout_s)
                return read_wav(out.read_bytes())
            except (subprocess.SubprocessError, OSError) as exc:
                raise ReferenceVoiceError(f"{Path(cmd[0]).name} failed on {text[:40]!r}") from exc

    def close(self) -> None:
        """Nothing to release."""


class HttpReferenceVoice:
    """POST ``{text, max_audio_length_ms, temperature}`` with ``X-API-Key``; the answer is a wav."""

    def __init__(
        self,
        url: str,
        api_key: str | None,
        max_audio_length_ms: int = 10_000,
        temperature: float = 0.0,
        timeout_s: float = 60.0,
    ) -> None:
        self.url = url
        self.api_key = api_key
        self.max_audio_length_ms = max_audio_length_ms
        self.temperature = temperature
        self.timeout_s = timeout_s

    def describe(self) -> str:
        """The service's address and the settings sent with every text."""
        return f"http {self.url} (temperature {self.temperature})"

    def synthesize(self, text: str) -> tuple[np.ndarray, int]:
        """Ask the service for ``text`` and decode the wav it answers."""
        body = json.dumps(
            {
                "text": text,
                "max_audio_length_ms": self.max_audio_length_ms,
                "temperature": self.temperature,
            }
        ).encode()
        headers = {"Content-Type": "application/json", "Accept": "audio/wav"}
        if self.api_key:
            headers["X-API-Key"] = self.api_key
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                data = response.read()
            return read_wav(data)
        except (urllib.error.URLError, OSError, RuntimeError) as exc:
            raise ReferenceVoiceError(f"reference voice at {self.url} failed: {exc}") from exc

    def close(self) -> None:
        """Nothing to release."""


def make_reference_voice(settings: ScoringSettings) -> OfflineReferenceVoice | HttpReferenceVoice:
    """The reference voice the settings name."""
    if settings.reference_voice == "http":
        if not settings.reference_url:
            raise ReferenceVoiceError(
                "reference_voice=http needs SPEECHSTREAM_SCORING_REFERENCE_URL"
            )
        key = settings.reference_api_key.get_secret_value() if settings.reference_api_key else None
        return HttpReferenceVoice(
            settings.reference_url,
            key,
            max_audio_length_ms=int(settings.max_audio_s * 1000),
            timeout_s=settings.reference_timeout_s,
        )
    return OfflineReferenceVoice(settings.reference_timeout_s)
