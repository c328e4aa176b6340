"""Typed settings of the scoring engine (``SPEECHSTREAM_SCORING_*``); its only env reader."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

GIB = 1024**3
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PARLER_PYTHON = REPO_ROOT / ".venv-parler" / "bin" / "python"
PARLER_SETUP = "bash scripts/setup-parler.sh"


class ScoringSettings(BaseSettings):
    """How submissions are fetched, scored and bounded.

    Every field reads ``SPEECHSTREAM_SCORING_<FIELD>``, e.g. ``SPEECHSTREAM_SCORING_MODELS_ROOT``.
    """

    model_config = SettingsConfigDict(env_prefix="SPEECHSTREAM_SCORING_", extra="ignore")

    models_root: Path | None = Field(
        None, description="Local repos as <root>/<namespace>/<name>; when set, the hub is not used."
    )
    hf_token: SecretStr | None = None
    hf_endpoint: str | None = None
    cache_dir: Path | None = Field(None, description="Where hub snapshots land (evicted).")
    max_weight_bytes: int = 18 * GIB

    n_samples: int = Field(40, ge=1)
    batch_size: int | None = Field(None, ge=1, description="Fixed batch size; None sizes batches.")
    max_batch_size: int = Field(32, ge=1)
    time_limit_s: float = Field(1800.0, gt=0)
    memory_limit_bytes: int | None = Field(
        None, description="Address-space cap of the isolated evaluation process (CPU only)."
    )
    max_audio_s: float = Field(8.0, gt=0, description="Longest clip generated per sample.")
    max_text_tokens: int = 100
    ce_k: float = 1.0

    reference_voice: Literal["offline", "http"] = "offline"
    reference_url: str | None = None
    reference_api_key: SecretStr | None = None
    reference_timeout_s: float = 60.0

    asr: Literal["pocketsphinx", "whisper", "http"] = "pocketsphinx"
    asr_url: str | None = None
    asr_model_path: Path | None = Field(None, description="Local Whisper weights directory.")
    asr_timeout_s: float = 60.0

    human_likeness_weights: Path | None = Field(
        None, description="Local weights of the human-likeness method; the method is off without."
    )
    human_likeness_weight: float = 0.0

    parler_python: Path | None = Field(
        None,
        description="Interpreter of the Parler environment; default .venv-parler/bin/python "
        f"of the repo when it exists (created by `{PARLER_SETUP}`).",
    )

    def interpreter(self, environment: str) -> Path | None:
        """The Python interpreter of an evaluator environment, or None where it is not set up."""
        if environment != "parler":
            return None
        if self.parler_python is not None:
            return self.parler_python if self.parler_python.exists() else None
        return DEFAULT_PARLER_PYTHON if DEFAULT_PARLER_PYTHON.exists() else None

    def child_payload(self) -> dict[str, Any]:
        """These settings as JSON for an evaluation child process, secrets included."""
        data = self.model_dump(mode="json")
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                data[name] = value.get_secret_value()
        return data
