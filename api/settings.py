"""The REST API's settings (``SPEECHSTREAM_API_*``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from speechstream.settings import ServiceSettings


class ApiSettings(ServiceSettings):
    """The REST API (``speechstream api run``): the original system's HTTP surface, served from
    PostgreSQL. ``admin_key`` guards ``POST /ensure_model`` and ``POST /minerboard_update``
    (without one they refuse every call); ``operator_key_file`` is the operator's key file
    (mode 0600), with which ``ensure_model`` attests the submissions it publishes."""

    model_config = SettingsConfigDict(env_prefix="SPEECHSTREAM_API_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    admin_key: SecretStr | None = None
    operator_key_file: Path | None = None
    pool_min_size: int = Field(1, ge=0)
    pool_max_size: int = Field(8, ge=1)
    recent_entries: int = Field(256, ge=1)
    metrics_port: int | None = Field(
        None, description="Also serve /metrics and /health on this port (the API serves "
        "/metrics on its own port too)."
    )
