"""Who may say what (SPEC §10): signing an envelope, the operator's set of trusted keys, and the
one check every reader makes of every record it reads.

- Every event that decides an outcome travels in an envelope signed by the key of the party
  allowed to say it. The signature covers the envelope exactly as written on the wire, less
  the signature itself (:func:`signing_bytes`): a topic mirrored to another cluster, or a
  record read back years later, checks the same.
- The operator's root key (every service is configured with its public half) signs the
  ``keys.trusted`` sets on the ``trust`` topic; each set names every other key the operator
  trusts, with the role it speaks for and the name it speaks under (:class:`TrustSet`).
- :func:`refusal` says why a record must not count, or None: its signer must hold a role that
  both writes its topic (``schemas.topics``, the same table the broker's ACLs come from) and
  may say its event type (:data:`SAID_BY`); an event that names its author (an evaluator's
  score, an auditor's audit, a validator's vector) must name the signer; and the signature
  must verify. A miner's registration or submission, and the operator's attested submission
  or uid handover, on the topics miners and the operator write, carry their own payload
  signature instead, which the intake worker checks (and rejects with a reason).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from schemas.envelope import Envelope
from schemas.events import KeysTrusted, TrustedKey
from schemas.signing import canonical_bytes, hotkey_of, sign_bytes, signature_bytes_valid
from schemas.topics import TopicSpec

SAID_BY: dict[str, frozenset[str]] = {
    "miner.registered": frozenset({"miner", "intake"}),
    "submission.published": frozenset({"miner", "intake"}),
    "submission.attested": frozenset({"api", "intake"}),
    "uid.reassigned": frozenset({"operator", "intake"}),
    "uid.handover": frozenset({"intake"}),
    "uid.revoked": frozenset({"intake"}),
    "submission.rejected": frozenset({"intake"}),
    "evaluation.requested": frozenset({"intake", "operator"}),
    "evaluation.cancelled": frozenset({"intake"}),
    "evaluation.status": frozenset({"evaluator"}),
    "score.computed": frozenset({"evaluator"}),
    "submission.failed": frozenset({"evaluator"}),
    "score.audited": frozenset({"auditor"}),
    "chain.block": frozenset({"chain"}),
    "weights.computed": frozenset({"validator"}),
    "minerboard.updated": frozenset({"validator", "api"}),
    "scoring.activated": frozenset({"operator"}),
    "keys.trusted": frozenset({"operator"}),
    "deadletter": frozenset({"intake", "evaluator", "auditor", "sink", "validator"}),
}
"""Each event type and the roles that may say it (SPEC §10): a reader also requires the role
to be one of the writers its topic allows. ``intake`` on the miners' and operator's own events
is the intake worker carrying them along its internal topics, re-signed."""

PAYLOAD_SIGNED = frozenset({
    "miner.registered", "submission.published", "submission.attested", "uid.reassigned",
})
"""Events that carry their author's signature in the payload (a miner's hotkey, the
operator's key): on the topics miners and the operator write, the intake worker checks it."""
ENTRY_TOPICS = frozenset({"registrations", "submissions"})
"""The topics miners (and the operator, through the REST API) write: the intake's entry."""

AUTHOR: dict[str, str] = {
    "score.computed": "evaluator",
    "evaluation.status": "evaluator",
    "score.audited": "auditor",
    "weights.computed": "validator",
}
"""Events that name their author: the name must be the signer's (one evaluator cannot write
another's score, one validator another's vector)."""


def signing_bytes(doc: dict[str, Any]) -> bytes:
    """What an envelope's signature covers: the envelope as decoded from the wire (a JSON
    object), without ``signature``, in canonical form (sorted keys, compact)."""
    return canonical_bytes({k: v for k, v in doc.items() if k != "signature"})


def _wire_doc(envelope: Envelope) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(envelope.model_dump_json(exclude_none=False))
    return doc


def sign_envelope(envelope: Envelope, private_key: str, public_key: str | None = None) -> Envelope:
    """``envelope`` signed with ``private_key`` (its ``signer`` set to the public key)."""
    public = public_key or hotkey_of(private_key)
    unsigned = envelope.model_copy(update={"signer": public, "signature": None})
    signature = sign_bytes(private_key, signing_bytes(_wire_doc(unsigned)))
    return unsigned.model_copy(update={"signature": signature})


@dataclass(frozen=True)
class TrustSet:
    """The keys the operator trusts at one version (0: none yet), by public key."""

    version: int = 0
    keys: dict[str, TrustedKey] = field(default_factory=dict)

    @classmethod
    def of(cls, event: KeysTrusted) -> TrustSet:
        """The set a ``keys.trusted`` event names."""
        return cls(event.version, {k.key: k for k in event.keys})

    def names(self, role: str) -> set[str]:
        """The names trusted for ``role``."""
        return {k.name for k in self.keys.values() if k.role == role}


def _roles(roles: frozenset[str] | set[str]) -> str:
    return " or ".join(sorted(roles)) or "nobody"


def refusal(envelope: Envelope, raw: bytes, spec: TopicSpec | None, trust: TrustSet,
            root: str) -> str | None:
    """Why the record ``raw`` (decoded as ``envelope``) read from the topic ``spec`` must not
    count, or None when its signer may say it (module docstring). ``root`` is the operator's
    public key; ``spec`` None is a topic outside the registry (no writer rule applies)."""
    etype = envelope.type
    topic = spec.name if spec is not None else "this topic"
    said_by = SAID_BY.get(etype, frozenset())
    allowed = said_by & set(spec.writers) if spec is not None else set(said_by)
    if spec is not None and spec.name in ENTRY_TOPICS and etype in PAYLOAD_SIGNED:
        return None  # the intake worker checks the payload's own signature
    signer, signature = envelope.signer, envelope.signature
    if signer is None or signature is None:
        return f"unsigned {etype} on {topic}: only a key of {_roles(allowed)} may say it"
    if signer == root:
        role, name = "operator", "operator"
    else:
        entry = trust.keys.get(signer)
        if entry is None:
            return (f"{etype} on {topic} signed by {signer[:16]}…, a key the operator does not "
                    f"trust (trusted set version {trust.version})")
        role, name = entry.role, entry.name
    if role not in allowed:
        return f"{etype} on {topic} signed by {role} {name!r}: only {_roles(allowed)} may say it"
    author_field = AUTHOR.get(etype)
    if author_field is not None:
        author = getattr(envelope.payload, author_field)
        if author != name:
            return (f"{etype} names {author_field} {author!r} but is signed by {role} "
                    f"{name!r}")
    try:
        doc = json.loads(raw)
    except ValueError:
        return "signature: the record is not JSON"
    if not isinstance(doc, dict) or not signature_bytes_valid(signer, signing_bytes(doc),
                                                              signature):
        return f"bad signature on {etype} by {role} {name!r}: the record was altered"
    return None


def root_refusal(envelope: Envelope, raw: bytes, root: str) -> str | None:
    """Why a record on the ``trust`` topic must not count: only ``keys.trusted`` sets signed
    by the root key do."""
    if envelope.type != "keys.trusted":
        return f"{envelope.type} on trust: only the operator's keys.trusted sets belong there"
    if envelope.signer != root or envelope.signature is None:
        return "keys.trusted not signed by the operator's root key"
    try:
        doc = json.loads(raw)
    except ValueError:
        return "signature: the record is not JSON"
    if not signature_bytes_valid(root, signing_bytes(doc), envelope.signature):
        return "bad signature on keys.trusted: the record was altered"
    return None
