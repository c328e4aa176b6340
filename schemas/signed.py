"""Signed events: the fields a key signs, its signature, and an event id derived from it.

Ed25519 signatures are deterministic, so the same signed event always gets the same id:
publishing it twice is a no-op downstream.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from schemas.envelope import Envelope, derived_event_id, new_envelope
from schemas.hashing import submission_hash
from schemas.signing import sign


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
    derived from the signature (``signer`` names who signed: ``miner``, ``operator``)."""
    event = event_type(**fields, signature=sign(private_key, fields))
    event_id = derived_event_id(event.signature, signer)  # type: ignore[attr-defined]
    return new_envelope(event, key=key, producer=producer, event_id=event_id)
