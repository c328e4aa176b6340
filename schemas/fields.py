"""The bounded field types, codes and statuses the events are made of (``schemas.events``)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal, get_args

from pydantic import Field

MAX_UIDS = 4096
"""No subnet holds more uids; the intake holds each registration to the subnet's own size (a
setting, ``SUBNET_SIZE`` by default)."""
SUBNET_SIZE = 256
"""The uids of a subnet, by default: 0 ≤ uid < 256 (SPEC §3)."""
MAX_BLOCK = 2**32
"""Blocks beyond it are no chain height (at 12 s a block, 1,600 years): bounded so that every
block fits PostgreSQL's bigint and no reader trusts an absurd number."""
MAX_SAMPLES = 1000
"""Samples of one evaluation (40 by default)."""
NO_NUL = r"^[^\x00]*$"  # PostgreSQL's text holds no NUL: one in a record would stop the sink

Uid = Annotated[int, Field(ge=0, lt=MAX_UIDS)]
Block = Annotated[int, Field(ge=0, lt=MAX_BLOCK)]
EventId = Annotated[str, Field(min_length=1, max_length=64, pattern=NO_NUL)]
"""An event id as events name one (a source, a request, a score)."""
Name = Annotated[str, Field(min_length=1, max_length=128, pattern=NO_NUL)]
"""A short name: an evaluator, a device, a library version, a content hash."""
Version = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9._-]+$")]
"""A scoring version (a request or a score may name one no engine computes: it is FAILED)."""
ActiveVersion = Literal["v1", "v2"]
"""A version the engines compute, the only kind a ``scoring.activated`` may name: an activation
of any other does not decode (a dead letter), so no reader counts a version no engine computes.
``scoring.versions.VERSIONS`` defines each (a test checks that both list the same)."""
SCORING_VERSIONS: tuple[str, ...] = get_args(ActiveVersion)
"""The names of :data:`ActiveVersion`, oldest first."""
Text = Annotated[str, Field(max_length=2000, pattern=NO_NUL)]
"""A reason, a note, a message."""
LongText = Annotated[str, Field(max_length=10_000, pattern=NO_NUL)]
"""A sample's text or transcription."""

Hotkey = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="ed25519 public key, hex")]
Signature = Annotated[str, Field(pattern=r"^[0-9a-f]{128}$", description="ed25519 signature, hex")]
HashStr = Annotated[str, Field(pattern=r"^[0-9]{1,20}$", description="submission hash, decimal")]
RepoPart = Annotated[str, Field(min_length=1, max_length=96, pattern=r"^[A-Za-z0-9._-]+$")]
"""A repo namespace or name as events carry it; :func:`repo_part_problem` holds the Hub's
stricter rules, which intake and the model loader enforce with a reason."""


def repo_part_problem(part: str) -> str | None:
    """Why ``part`` (a repo namespace or name) breaks the Hugging Face Hub's naming rules, or
    None: 1 to 96 letters, digits, ``-``, ``_`` and ``.``; no ``..`` or ``--``; not starting
    or ending with ``-`` or ``.``. A path such as ``..`` or ``../x`` never passes."""
    if not 1 <= len(part) <= 96:
        return f"{part[:40]!r} must be 1 to 96 characters long"
    bad = sorted({c for c in part if not (c.isascii() and (c.isalnum() or c in "-_."))})
    if bad:
        return (f"{part[:40]!r} may hold only letters, digits, '-', '_' and '.' "
                f"(not {''.join(bad)!r})")
    if ".." in part or "--" in part:
        return f"{part!r} must not contain '..' or '--'"
    if part[0] in "-." or part[-1] in "-.":
        return f"{part!r} must not start or end with '-' or '.'"
    return None


SubmissionType = Literal["submission.published", "submission.attested"]
"""The event types of a submission: the miner's own, or the REST API's attested one."""


class RejectionCode(StrEnum):
    """Why a registration or a submission was turned away."""

    BAD_SIGNATURE = "BAD_SIGNATURE"
    HASH_MISMATCH = "HASH_MISMATCH"
    UNREGISTERED_HOTKEY = "UNREGISTERED_HOTKEY"
    UID_TAKEN = "UID_TAKEN"
    HOTKEY_HAS_OTHER_UID = "HOTKEY_HAS_OTHER_UID"
    RATE_LIMITED = "RATE_LIMITED"
    DUPLICATE_REPO = "DUPLICATE_REPO"
    DUPLICATE_HASH = "DUPLICATE_HASH"
    INVALID_REPO = "INVALID_REPO"
    BLOCK_OUT_OF_RANGE = "BLOCK_OUT_OF_RANGE"
    BLOCK_TOO_OLD = "BLOCK_TOO_OLD"
    UID_REASSIGNED = "UID_REASSIGNED"
    UID_OUT_OF_RANGE = "UID_OUT_OF_RANGE"
    EVENT_ID_MISMATCH = "EVENT_ID_MISMATCH"


DEFAULT_SCORING_VERSION = "v2"
"""The scoring version new evaluation requests get, and the default of the field in every
event that carries one (the codec writes every field, so a record on a topic always names its
version; the records written before v2 existed name ``v1``)."""


EvaluationStatus = Literal["QUEUED", "PRECHECK", "RUNNING"]
FinalStatus = Literal["COMPLETED", "FAILED"]
Status = Literal["QUEUED", "PRECHECK", "RUNNING", "COMPLETED", "FAILED"]

STATUS_RANK: dict[str, int] = {
    "QUEUED": 0, "PRECHECK": 1, "RUNNING": 2, "COMPLETED": 3, "FAILED": 3,
}
"""How far an evaluation has come. A submission's status never moves to a lower (or equal)
rank: a status seen late, or again, changes nothing. COMPLETED and FAILED are final."""
FINAL_RANK = STATUS_RANK["COMPLETED"]

AuditVerdict = Literal["agree", "disagree", "unavailable"]
"""An audit's finding: the score reproduced, not reproduced, or not reproducible."""
