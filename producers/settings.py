"""The operator's command-line settings: where the operator's key file is."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class OperatorSettings(BaseSettings):
    """The operator's command line (``speechstream operator``): where the operator's key file
    is. ``SPEECHSTREAM_OPERATOR_KEY_FILE``, else the REST API's
    ``SPEECHSTREAM_API_OPERATOR_KEY_FILE`` (one key serves both), else
    ``~/.speechstream/operator.json``."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    key_file: Path = Field(
        Path("~/.speechstream/operator.json"),
        validation_alias=AliasChoices("SPEECHSTREAM_OPERATOR_KEY_FILE",
                                      "SPEECHSTREAM_API_OPERATOR_KEY_FILE"),
    )
