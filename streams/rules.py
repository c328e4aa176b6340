"""The validation rules of SPEC §3 as pure functions: no Faust, no Kafka, easy to test."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from schemas.envelope import Envelope, derived_event_id
from schemas.events import (
    EvaluationCancelled,
    EvaluationRequested,
    MinerRegistered,
    SubmissionAttested,
    SubmissionPublished,
    UidHandover,
    UidReassigned,
)
from schemas.fields import RejectionCode, repo_part_problem
from schemas.signed import signed_event_id
from schemas.signing import signature_is_valid

RATE_LIMIT_BLOCKS = 28_800
"""SPEC §3: one accepted submission per hotkey within this many blocks (the intake worker's
default, `SPEECHSTREAM_STREAMS_RATE_LIMIT_BLOCKS`)."""


@dataclass(frozen=True)
class Rejection:
    """Why an event is turned away."""

    code: RejectionCode
    message: str


@dataclass(frozen=True)
class Decision:
    """What the duplicate check decided for a newcomer.

    ``accept``: route it; ``replay``: the same event again, do nothing; ``reject``: refuse it;
    ``displace``: it predates the holder, so it takes the place and the holder is refused.
    """

    kind: Literal["accept", "replay", "reject", "displace"]
    rejection: Rejection | None = None


def check_signature(
    event: MinerRegistered | SubmissionPublished | SubmissionAttested | UidReassigned,
    operator_key: str | None = None,
) -> Rejection | None:
    """A miner's event must verify against its hotkey; an operator's event (a submission
    attested through the REST API, a uid handover) must come from ``operator_key``, the
    operator's configured public key, and verify against it."""
    if isinstance(event, SubmissionAttested | UidReassigned):
        if operator_key is None or event.operator != operator_key:
            verb = "attested" if isinstance(event, SubmissionAttested) else "signed"
            return Rejection(
                RejectionCode.BAD_SIGNATURE,
                f"{verb} by {event.operator[:16]}…, which is not the operator's key"
                + ("" if operator_key else " (no operator key is configured)"),
            )
        signer = event.operator
    else:
        signer = event.hotkey
    if signature_is_valid(signer, event.signed_fields(), event.signature):
        return None
    return Rejection(
        RejectionCode.BAD_SIGNATURE, f"signature does not verify for key {signer[:16]}…"
    )


def check_event_id(envelope: Envelope) -> Rejection | None:
    """A signed event's id is the one its signature gives (:func:`schemas.signed.
    signed_event_id`): the same signed content re-sent under another id is refused, never a
    new event (it would displace its own original and free its rate-limit window)."""
    expected = signed_event_id(envelope.payload)  # type: ignore[arg-type]
    if envelope.event_id != expected:
        return Rejection(RejectionCode.EVENT_ID_MISMATCH,
                         f"event id {envelope.event_id[:40]} is not {expected}, the one its "
                         "signature gives: the same signed content is the same event")
    return None


def check_uid(event: MinerRegistered | UidReassigned, subnet_size: int) -> Rejection | None:
    """A uid lies within the subnet: 0 ≤ uid < ``subnet_size`` (SPEC §3)."""
    if event.uid >= subnet_size:
        return Rejection(RejectionCode.UID_OUT_OF_RANGE,
                         f"uid {event.uid} is not in this subnet (0 to {subnet_size - 1})")
    return None


def check_registration(event: MinerRegistered, uid_owner: str | None) -> Rejection | None:
    """A uid belongs to the hotkey that registered it first."""
    if uid_owner is not None and uid_owner != event.hotkey:
        return Rejection(
            RejectionCode.UID_TAKEN,
            f"uid {event.uid} is registered to hotkey {uid_owner[:16]}…; a handover is an "
            "operator action",
        )
    return None


def check_hotkey(
    event: MinerRegistered, hotkey_uid: int | None, reassigned: dict[str, Any] | None = None
) -> Rejection | None:
    """A hotkey holds one uid: registering another while it holds one is refused. A
    registration of the uid a later handover took from the hotkey (``reassigned``: ``{"uid",
    "block", "to"}``; one that was still on its way) is refused too."""
    if (reassigned is not None and reassigned["uid"] == event.uid
            and event.block <= reassigned["block"]):
        return Rejection(RejectionCode.UID_REASSIGNED,
                         reassigned_message(event.hotkey, reassigned))
    if hotkey_uid is not None and hotkey_uid != event.uid:
        return Rejection(
            RejectionCode.HOTKEY_HAS_OTHER_UID,
            f"hotkey {event.hotkey[:16]}… already holds uid {hotkey_uid}; a hotkey holds one "
            "uid",
        )
    return None


def plan_handover(
    event: UidReassigned, event_id: str, owner: str | None, last: dict[str, Any] | None
) -> Literal["claim", "replay", "noop"]:
    """What a verified handover does on its uid's partition. ``owner`` is the uid's hotkey
    (``uid_owner``), ``last`` the uid's latest handover (``uid_handover``).

    ``claim``: the uid goes to the new hotkey (it is claimed at once, like a registration's,
    and handed back if the new hotkey refuses it); ``replay``: this handover claimed it already
    (a record Faust delivers again): send it on again; ``noop``: the uid is the new hotkey's
    already, or this handover was refused and handed back.
    """
    if last is not None and last.get("event_id") == event_id:
        return "replay" if owner == event.hotkey else "noop"
    if owner == event.hotkey:
        return "noop"
    return "claim"


def check_handover(event: UidHandover, hotkey_uid: int | None) -> Rejection | None:
    """A hotkey holds one uid: a handover to a hotkey that holds another is refused (the uid
    stays with its owner)."""
    if hotkey_uid is not None and hotkey_uid != event.uid:
        stays = (f"stays with hotkey {event.previous[:16]}…" if event.previous
                 else "stays free")
        return Rejection(
            RejectionCode.HOTKEY_HAS_OTHER_UID,
            f"hotkey {event.hotkey[:16]}… already holds uid {hotkey_uid}; a hotkey holds one "
            f"uid, so uid {event.uid} {stays}",
        )
    return None


def revocation_applies(hotkey_uid: int | None, uid: int) -> bool:
    """Whether a hotkey that holds ``hotkey_uid`` loses ``uid`` to a handover: when it holds
    that uid, or none (its own registration may still be on its way). A hotkey that holds
    another uid has moved on: a stale revocation changes nothing."""
    return hotkey_uid is None or hotkey_uid == uid


def reassigned_message(hotkey: str, reassigned: dict[str, Any]) -> str:
    """Why a hotkey whose uid was handed away is turned away."""
    return (f"uid {reassigned['uid']} was handed to hotkey {reassigned['to'][:16]}… at block "
            f"{reassigned['block']} (an operator's handover); hotkey {hotkey[:16]}… holds no "
            "uid now")


HISTORY = 32  # accepted submissions remembered per hotkey


BLOCK_WINDOW = 25
"""How far behind the chain's head a claimed block may lie, in blocks (the intake worker's
default, ``SPEECHSTREAM_STREAMS_BLOCK_WINDOW``): five minutes of 12-second blocks. An honest
miner signs at the head its node shows (a block or two behind the chain at worst) and the
record reaches the broker within seconds (a miner's producer gives a delivery up after 30 s);
five minutes leave room for a retry by hand, and a backdate of five minutes displaces no
submission older than that."""


def check_block(
    block: int, registered_block: int | None, head: int | None, *,
    head_then: int | None = None, window: int | None = None,
) -> Rejection | None:
    """A claimed block lies between its hotkey's registration block and the chain's ``head``
    (``BLOCK_OUT_OF_RANGE``), and at most ``window`` blocks behind ``head_then``, the head as
    it stood when the claim reached the broker (``BLOCK_TOO_OLD``); each bound where it is
    known."""
    if registered_block is not None and block < registered_block:
        return Rejection(
            RejectionCode.BLOCK_OUT_OF_RANGE,
            f"block {block} is before the hotkey's registration at block {registered_block}",
        )
    if window is not None and head_then is not None and block < head_then - window:
        return Rejection(
            RejectionCode.BLOCK_TOO_OLD,
            f"block {block} is more than {window} blocks behind the chain's head when it "
            f"reached the broker (block {head_then}); a claimed block lies within {window} "
            "blocks of the head",
        )
    if head is not None and block > head:
        return Rejection(
            RejectionCode.BLOCK_OUT_OF_RANGE,
            f"block {block} is ahead of the chain's head (block {head})",
        )
    return None


def check_submission(
    event: SubmissionPublished | SubmissionAttested,
    registered_uid: int | None,
    accepted: list[list[Any]] | None,
    window: int = RATE_LIMIT_BLOCKS,
    *,
    registered_block: int | None = None,
    head: int | None = None,
    reassigned: dict[str, Any] | None = None,
    head_then: int | None = None,
    block_window: int | None = None,
) -> Rejection | Literal["replay"] | None:
    """Hash, the repo's name (the Hub's rules), registration, the claimed block (between the
    hotkey's registration and the chain's ``head``, and at most ``block_window`` blocks behind
    ``head_then``: :func:`check_block`) and rate limit; ``"replay"`` for a commitment already
    accepted.

    ``accepted`` is the hotkey's accepted submissions as ``[block, hash]`` pairs. The rate
    limit refuses a submission within ``window`` blocks of any of them, before or after: a
    record delivered again (Faust runs at least once), or late, gets the same answer it got
    the first time. A block difference of 0 with the same hash is the same commitment.
    ``reassigned`` is the uid an operator's handover took from the hotkey (``{"uid", "block",
    "to"}``): an unregistered hotkey that has one is told so (``UID_REASSIGNED``).
    """
    expected = event.expected_hash()
    if event.hash != expected:
        return Rejection(
            RejectionCode.HASH_MISMATCH,
            f"hash {event.hash} does not match the submission's fields (expected {expected})",
        )
    for what, part in (("namespace", event.repo_namespace), ("name", event.repo_name)):
        problem = repo_part_problem(part)
        if problem is not None:
            return Rejection(RejectionCode.INVALID_REPO, f"repo {what} {problem}")
    if registered_uid is None and reassigned is not None:
        return Rejection(RejectionCode.UID_REASSIGNED,
                         reassigned_message(event.hotkey, reassigned))
    if registered_uid is None:
        return Rejection(
            RejectionCode.UNREGISTERED_HOTKEY,
            f"hotkey {event.hotkey[:16]}… is not registered; register a uid first",
        )
    history = accepted or []
    if [event.block, event.hash] in history:
        return "replay"
    out_of_range = check_block(event.block, registered_block, head, head_then=head_then,
                               window=block_window)
    if out_of_range is not None:
        return out_of_range
    close = [block for block, _ in history if abs(event.block - block) < window]
    if close:
        nearest = min(close, key=lambda b: abs(event.block - b))
        diff = abs(event.block - nearest)
        return Rejection(
            RejectionCode.RATE_LIMITED,
            f"rate limited: another submission at block {nearest}, this one at {event.block}; "
            f"{window - diff} more blocks to wait (one submission per {window} blocks)",
        )
    return None


def remember(accepted: list[list[Any]] | None, block: int, hash_: str) -> list[list[Any]]:
    """The hotkey's accepted history with ``[block, hash]`` added (the newest ``HISTORY``)."""
    history = sorted([*(accepted or []), [block, hash_]], key=lambda bh: bh[0])
    return history[-HISTORY:]


FREES_THE_WINDOW = frozenset({RejectionCode.DUPLICATE_REPO, RejectionCode.DUPLICATE_HASH})
"""Rejections, after the per-hotkey checks, of a submission that then holds no rate-limit
window: a duplicate is not the hotkey's submission for the window."""


def forget(accepted: list[list[Any]] | None, block: int, hash_: str) -> list[list[Any]]:
    """The hotkey's accepted history without ``[block, hash]`` (unchanged when absent)."""
    return [bh for bh in (accepted or []) if bh != [block, hash_]]


def dedupe(holder: dict[str, Any] | None, newcomer: dict[str, Any]) -> Decision:
    """Same repo (or the same hash): the later block loses; the earliest keeps its place.

    Both are ``{"block", "hash", "event_id", "repo"}``.
    """
    if holder is None:
        return Decision("accept")
    if holder["event_id"] == newcomer["event_id"]:
        return Decision("replay")
    same_hash = holder["hash"] == newcomer["hash"]
    code = RejectionCode.DUPLICATE_HASH if same_hash else RejectionCode.DUPLICATE_REPO
    if (newcomer["block"], newcomer["event_id"]) < (holder["block"], holder["event_id"]):
        return Decision(
            "displace",
            Rejection(code, f"duplicate of {newcomer['repo']} submitted earlier at block "
                            f"{newcomer['block']} (hash {newcomer['hash']})"),
        )
    return Decision(
        "reject",
        Rejection(code, f"duplicate of {holder['repo']} submitted earlier at block "
                        f"{holder['block']} (hash {holder['hash']})"),
    )


REQUESTED = "requested"
"""The stage an evaluation request's event id is derived with, from its accepted submission's
envelope (``derived_event_id(accepted id, REQUESTED)``)."""


def withdrawal(displaced: Envelope, newcomer: Envelope,
               rejection: Rejection) -> EvaluationCancelled | None:
    """The cancellation of the evaluation request that ``displaced`` (an accepted submission,
    routed earlier) got, now that ``newcomer`` (an earlier submission of its repo) takes its
    place; its reason is the displacement's.

    None when both carry the same hash: the newcomer's request evaluates that same hash (an
    evaluator that scored it already acknowledges it without evaluating), so the hash's score
    is the newcomer's and nothing is withdrawn.
    """
    old, new = displaced.payload, newcomer.payload
    assert isinstance(old, EvaluationRequested) and isinstance(new, EvaluationRequested)
    if old.hash == new.hash:
        return None
    return EvaluationCancelled(
        hash=old.hash, request_event_id=derived_event_id(displaced.event_id, REQUESTED),
        hotkey=old.hotkey, uid=old.uid, block=old.block, code=rejection.code,
        reason=rejection.message, displaced_by=new.source_event_id, displaced_by_hash=new.hash,
    )
