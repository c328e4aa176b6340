"""Signed events: the fields a key signs, its signature, and an event id derived from it.

Ed25519 signatures are deterministic, so the same signed event always gets the same id:
publishing it twice is a no-op downstream.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from schemas.envelope import Envelope, derived_event_id, new_envelope
from schemas.events import MinerRegistered, SubmissionAttested, SubmissionPublished, UidReassigned
from schemas.hashing import submission_hash
from schemas.signing import sign

SIGNER: dict[type[BaseModel], str] = {
    MinerRegistered: "miner", SubmissionPublished: "miner",
    SubmissionAttested: "operator", UidReassigned: "operator",
}
"""Who signs each signed event: its id is derived from the signature and the signer."""


def signed_event_id(event: MinerRegistered | SubmissionPublished | SubmissionAttested
                    | UidReassigned) -> str:
    """The one event id of a signed event: derived from its signature, so the same signed
    content is the same event whatever envelope it comes in."""
    return derived_event_id(event.signature, SIGNER[type(event)])


def submission_fields(
    type_: str,
    *,
    repo_namespace: str,
    repo_name: str,
    hotkey: str,
    block: int,
    revision: str | None = None,
    config_template: str = "default",
    competition_id: str = "d1",
    hash_override: str | None = None,
) -> dict[str, Any]:
    """The fields of a submission event, with the SPEC §3 hash (unless overridden on purpose)."""
    return {
        "type": type_,
        "repo_namespace": repo_namespace,
        "repo_name": repo_name,
        "revision": revision,
        "config_template": config_template,
        "competition_id": competition_id,
        "hotkey": hotkey,
        "block": block,
        "hash": hash_override
        or submission_hash(repo_namespace, repo_name, config_template, hotkey),
    }


def signed_envelope(
    event_type: type[BaseModel],
    fields: dict[str, Any],
    private_key: str,
    *,
    key: str | None,
    producer: str,
    signer: str,
) -> Envelope:
    """``event_type`` of ``fields`` signed with ``private_key``, in an envelope whose id is
    derived from the signature (``signer`` names who signed: ``miner``, ``operator``, as
    :data:`SIGNER` says for the type)."""
    event = event_type(**fields, signature=sign(private_key, fields))
    if SIGNER.get(event_type) != signer:
        raise ValueError(f"{event_type.__name__} is signed by {SIGNER.get(event_type)}, "
                         f"not {signer}")
    return new_envelope(event, key=key, producer=producer,
                        event_id=signed_event_id(event))  # type: ignore[arg-type]
