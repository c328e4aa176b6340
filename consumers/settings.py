"""The consumers' settings: an evaluator (``SPEECHSTREAM_EVALUATOR_*``), an auditor
(``SPEECHSTREAM_AUDIT_*``), a validator (``SPEECHSTREAM_VALIDATOR_*``)."""

from __future__ import annotations

import socket
from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from speechstream.settings import ServiceSettings


class ScoringProcessSettings(ServiceSettings):
    """What a process that runs the scorer has besides (an evaluator, an auditor)."""

    malloc_arena_max: int = Field(
        2, ge=0, description="The most malloc arenas glibc may use in this process (set at "
        "its start, before any thread; 0: glibc's default, eight per core). Threads come and "
        "go with the Kafka clients, and each arena keeps what it held once.",
    )
    malloc_trim: bool = Field(
        True, description="Hand the free heap back to the system after its work, at most "
        "every 10 s (malloc_trim).",
    )


class EvaluatorSettings(ScoringProcessSettings):
    """One evaluator consumer process (one per device)."""

    model_config = SettingsConfigDict(env_prefix="SPEECHSTREAM_EVALUATOR_", extra="ignore")

    device: str = "cpu"
    group_id: str = "speechstream-evaluators"
    evaluator_id: str = Field(default_factory=socket.gethostname)
    transaction_timeout_ms: int = 900_000
    session_timeout_ms: int = Field(
        45_000, ge=6_000, description="How long a stopped evaluator's partitions wait for it "
        "(a static member) before they go to the other evaluators of its group.",
    )
    poll_timeout_s: float = 1.0
    progress_window_s: float = Field(
        2400.0, ge=10.0, description="Lag grown over this long with nothing committed: /health "
        "answers 503 (`not progressing`). Above the longest evaluation (the scoring time "
        "limit, SPEECHSTREAM_SCORING_TIME_LIMIT_S, 1800 s by default).",
    )
    state_dir: Path = Field(
        default_factory=lambda: Path.home() / ".cache" / "speechstream" / "evaluator",
        description="Where an evaluator keeps the results it computed and has not committed "
        "yet (a directory per transactional id): its successor on this machine commits them "
        "instead of evaluating again.",
    )


class AuditSettings(ScoringProcessSettings):
    """An auditor: re-scores a deterministic sample of the scores on its own device.

    A score is audited when ``sha256("audit:<hash>:<version>")`` falls in the first
    ``sample_rate`` of the hash space, so every auditor picks the same scores. Totals within
    ``tolerance`` agree; without one, 1e-6 on CPU and 1e-3 on a GPU.
    """

    model_config = SettingsConfigDict(env_prefix="SPEECHSTREAM_AUDIT_", extra="ignore")

    sample_rate: float = Field(0.05, ge=0.0, le=1.0)
    device: str = "cpu"
    tolerance: float | None = Field(None, ge=0.0)
    auditor_id: str = Field(default_factory=socket.gethostname, min_length=1, max_length=128)
    group_id: str = "speechstream-audit"
    niceness: int = Field(10, ge=0, le=19, description="Added to the auditor's CPU niceness "
                          "(its evaluation children inherit it): the lowest priority.")
    poll_timeout_s: float = 1.0
    progress_window_s: float = Field(
        2400.0, ge=10.0, description="Lag grown over this long with nothing committed: /health "
        "answers 503 (`not progressing`). Above the longest evaluation (the scoring time "
        "limit, SPEECHSTREAM_SCORING_TIME_LIMIT_S, 1800 s by default).",
    )

    def tolerance_for_device(self) -> float:
        """The tolerance set, else 1e-6 on CPU and 1e-3 on a GPU."""
        if self.tolerance is not None:
            return self.tolerance
        return 1e-6 if self.device == "cpu" else 1e-3


class ValidatorSettings(ServiceSettings):
    """A validator: weights from the score topic at every epoch (SPEC §5).

    ``validator_id`` names its vectors on the weights topic; ``epoch_blocks`` is how many
    chain blocks an epoch lasts; ``client_name`` names its readers (it joins no group: it
    reads every topic whole). Which scores count is the ledger's rule: those of the version
    activated on ``scoring.active``, before any each submission's own.
    """

    model_config = SettingsConfigDict(env_prefix="SPEECHSTREAM_VALIDATOR_", extra="ignore")

    validator_id: str = Field(default_factory=socket.gethostname, min_length=1, max_length=128)
    epoch_blocks: int = Field(100, ge=1)
    client_name: str = "speechstream-validator"
    poll_timeout_s: float = 0.5
