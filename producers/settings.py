"""The operator's and the chain adapter's command-line settings: where their key files are."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class OperatorSettings(BaseSettings):
    """The operator's command line (``speechstream operator``, ``trust``, ``scoring
    activate``, ``rescore``): where the operator's key file is — the root key every service
    trusts. ``SPEECHSTREAM_OPERATOR_KEY_FILE``, else the REST API's
    ``SPEECHSTREAM_API_OPERATOR_KEY_FILE`` (one key serves both), else
    ``~/.speechstream/operator.json``."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    key_file: Path = Field(
        Path("~/.speechstream/operator.json"),
        validation_alias=AliasChoices("SPEECHSTREAM_OPERATOR_KEY_FILE",
                                      "SPEECHSTREAM_API_OPERATOR_KEY_FILE"),
    )


class ChainSettings(BaseSettings):
    """The chain adapter (``speechstream chain tick``): its signing key
    (``SPEECHSTREAM_CHAIN_KEY_FILE``), which the operator's trusted set names as role
    ``chain``, name ``chain``. Required when a root of trust is configured
    (``SPEECHSTREAM_TRUST_OPERATOR_KEY``): readers refuse an unsigned head."""

    model_config = SettingsConfigDict(env_prefix="SPEECHSTREAM_CHAIN_", extra="ignore")

    key_file: Path | None = Field(
        None, description="The chain adapter's key file (`speechstream trust keygen`); every "
        "head block it publishes is signed with it.",
    )
