"""What the API reads and answers: request and response models, the original clients' shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.fields import Hotkey, Status

HashField = Annotated[str, Field(pattern=r"^0*[0-9]{1,20}$", description="submission hash")]
"""A submission hash as clients send it: leading zeros allowed (compared as integers)."""


class Score(BaseModel):
    """The part of a score the clients read."""

    total_score: float | None = None


class Details(BaseModel):
    """What identifies the weights evaluated, what reproduces the score, and its latest audit."""

    safetensors_hash: str | None = None
    manifest: dict[str, Any] | None = Field(
        None, description="What reproduces the score (the score event's manifest); null for "
        "scores written before manifests existed.",
    )
    audit: dict[str, Any] | None = Field(
        None, description="The latest audit of the score: verdict (agree, disagree, "
        "unavailable), both totals, tolerance, auditor, reason.",
    )


class Entry(BaseModel):
    """A submission's current entry (``ensure_model`` answers it without ``hash``)."""

    score: Score
    details: Details
    status: Status
    notes: str | None = None


class SubmissionDetails(Entry):
    """``GET /model_submission_details``: the entry of a known submission."""

    hash: str


class Queued(BaseModel):
    """``POST /ensure_model`` of a submission the pipeline did not know: published, queued."""

    status: Literal["QUEUED"] = "QUEUED"


class EnsureModelRequest(BaseModel):
    """``POST /ensure_model``'s body (the original's field names)."""

    model_config = ConfigDict(extra="ignore")

    repo_namespace: Annotated[str, Field(min_length=1, max_length=96,
                                         pattern=r"^[A-Za-z0-9._-]+$")]
    repo_name: Annotated[str, Field(min_length=1, max_length=96, pattern=r"^[A-Za-z0-9._-]+$")]
    hash: HashField
    chat_template_type: Annotated[str, Field(min_length=1, max_length=64)] = "default"
    block: Annotated[int, Field(ge=0)]
    hotkey: Hotkey
    revision: Annotated[str, Field(max_length=64)] | None = None


class MinerboardRequest(BaseModel):
    """``POST /minerboard_update``'s body."""

    model_config = ConfigDict(extra="ignore")

    hash: HashField
    uid: Annotated[int, Field(ge=0)]
    hotkey: Annotated[str, Field(min_length=1, max_length=128)]
    block: Annotated[int, Field(ge=0)]


class MinerboardEntry(BaseModel):
    """One uid on ``GET /minerboard``."""

    uid: int
    hotkey: str
    hash: str
    block: int
    status: Status | None
    repo_namespace: str | None
    repo_name: str | None
    safetensors_hash: str | None
    total_score: float | None
    timestamp: datetime
    notes: str | None


class RecentEntry(BaseModel):
    """One submission on ``GET /recent_entries``."""

    hash: str | None
    status: Status
    repo_name: str | None
    repo_namespace: str | None
    safetensors_hash: str | None
    total_score: float | None
    timestamp: datetime
    notes: str | None


class WeightOfUid(BaseModel):
    """One uid of a weights vector."""

    uid: int
    weight: float
    hotkey: str | None
    hash: str | None
    repo: str | None
    status: str | None
    score: float | None
    win_rate: float | None
    invalid: str | None


class Weights(BaseModel):
    """``GET /weights``: a validator's latest vector."""

    validator: str
    epoch: int
    block: int
    uids: list[int]
    weights: list[float]
    entries: list[WeightOfUid]


class HealthCheck(BaseModel):
    """``GET /hc``: the original's answer (``g`` up, ``k`` no kill switch)."""

    g: bool = True
    k: bool = False
    info: str = "speechstream validation API"
    id: str = "speechstream-api"
