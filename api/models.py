"""What the API reads and answers: request and response models, the original clients' shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from schemas.fields import NO_NUL, Block, Hotkey, RepoPart, Status, Uid
from schemas.hashing import submission_hash

EXAMPLE_HOTKEY = "ab" * 32
EXAMPLE_HASH = submission_hash("alice", "tts-1", "default", EXAMPLE_HOTKEY)
"""The OpenAPI document's example: the SPEC hash of alice/tts-1 by hotkey ``abab…``."""


def _canonical_hash(value: str) -> str:
    return str(int(value))


def _utf8(value: str) -> str:
    value.encode("utf-8")  # a lone surrogate (JSON allows "\ud800") is a ValueError: 422
    return value


def _json_integer(value: object) -> object:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a JSON integer")  # pydantic would take true or "5"
    return value


HashField = Annotated[
    str, Field(pattern=r"^[0-9]{1,20}$", description="submission hash, 1 to 20 decimal digits "
               "(leading zeros allowed: compared as integers)"),
    AfterValidator(_canonical_hash),
]
"""A submission hash as clients send it, read as the pipeline writes it (no leading zeros)."""
Template = Annotated[str, Field(min_length=1, max_length=64, pattern=NO_NUL),
                     AfterValidator(_utf8)]
"""A chat template type, as a submission event's ``config_template`` holds it."""
Revision = Annotated[str, Field(min_length=1, max_length=64, pattern=NO_NUL),
                     AfterValidator(_utf8)]
"""A repo revision, as a submission event's ``revision`` holds it."""
StrictBlock = Annotated[Block, BeforeValidator(_json_integer)]
"""A block as a JSON integer (``5`` or ``5.0``, not ``true`` or ``"5"``), 0 ≤ block < 2^32."""
StrictUid = Annotated[Uid, BeforeValidator(_json_integer)]
"""A uid as a JSON integer, 0 ≤ uid < 4096."""
ValidatorId = Annotated[str, Field(min_length=1, max_length=128, pattern=NO_NUL)]
"""A validator's id, as a weights event's ``validator`` holds it."""


class Problem(BaseModel):
    """An error the API answers (every status but 422): what to fix, or why it failed."""

    detail: str


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
    """``POST /ensure_model``'s body (the original's field names), bounded as the
    ``submission.attested`` event it becomes."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [{
        "repo_namespace": "alice", "repo_name": "tts-1", "hash": EXAMPLE_HASH,
        "chat_template_type": "default", "block": 5000, "hotkey": EXAMPLE_HOTKEY}]})

    repo_namespace: RepoPart
    repo_name: RepoPart
    hash: HashField
    chat_template_type: Template = "default"
    block: StrictBlock
    hotkey: Hotkey
    revision: Revision | None = None


class MinerboardRequest(BaseModel):
    """``POST /minerboard_update``'s body, bounded as the ``minerboard.updated`` event it
    becomes."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [{
        "hash": EXAMPLE_HASH, "uid": 0, "hotkey": EXAMPLE_HOTKEY, "block": 5000}]})

    hash: HashField
    uid: StrictUid
    hotkey: Hotkey
    block: StrictBlock


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
