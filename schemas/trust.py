"""Who may say what (SPEC §10): signing an envelope, the operator's set of trusted keys, and the
one check every reader makes of every record it reads.

- Every event that decides an outcome travels in an envelope signed by the key of the party
  allowed to say it. The signature covers the record's bytes exactly as written on the wire,
  with ``"signature":null`` where the signature stands (it is the envelope's last field:
  :func:`signed_part`): a topic mirrored to another cluster byte for byte, or a record read
  back years later, checks the same, and no reader has to re-serialize anything to check it.
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

from dataclasses import dataclass, field

from schemas.codec import encode
from schemas.envelope import Envelope
from schemas.events import KeysTrusted, TrustedKey
from schemas.signing import hotkey_of, sign_bytes, signature_bytes_valid
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
    "sample.audio": frozenset({"evaluator"}),
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
    "sample.audio": "evaluator",
    "evaluation.status": "evaluator",
    "score.audited": "auditor",
    "weights.computed": "validator",
}
"""Events that name their author: the name must be the signer's (one evaluator cannot write
another's score, one validator another's vector)."""


SIGNATURE_BYTES = (len(b'"signer":"","signature":""') + 64 + 128
                   - len(b'"signer":null,"signature":null'))
"""How many bytes signing adds to an envelope's encoding (its signer and signature in hex)."""
_UNSIGNED_TAIL = b',"signature":null}'
_SIGNATURE_HEAD = b',"signature":"'


def signed_part(raw: bytes, signature: str) -> bytes | None:
    """The bytes ``signature`` signs in the record ``raw``: ``raw`` with its closing
    ``,"signature":"<hex>"}`` written as ``,"signature":null}``; None when ``raw`` does not end
    that way (it was not written by :func:`sign_envelope`'s encoding)."""
    tail = _SIGNATURE_HEAD + signature.encode("ascii") + b'"}'
    if not raw.endswith(tail):
        return None
    return raw[:-len(tail)] + _UNSIGNED_TAIL


def sign_envelope(envelope: Envelope, private_key: str, public_key: str | None = None) -> Envelope:
    """``envelope`` signed with ``private_key`` (its ``signer`` set to the public key): the
    signature covers its wire encoding with ``"signature":null``, which the codec writes last
    and byte for byte the same for the signed envelope."""
    public = public_key or hotkey_of(private_key)
    unsigned = envelope.model_copy(update={"signer": public, "signature": None})
    body = encode(unsigned)
    if not body.endswith(_UNSIGNED_TAIL):  # the envelope's last field is its signature
        raise ValueError("the envelope's encoding does not end with its signature")
    return unsigned.model_copy(update={"signature": sign_bytes(private_key, body)})


def signed_encoding(envelope: Envelope, private_key: str, public_key: str | None = None) -> bytes:
    """The wire encoding of ``envelope`` signed with ``private_key``: the same bytes as
    ``encode(sign_envelope(...))``, encoded once."""
    public = public_key or hotkey_of(private_key)
    body = encode(envelope.model_copy(update={"signer": public, "signature": None}))
    if not body.endswith(_UNSIGNED_TAIL):  # the envelope's last field is its signature
        raise ValueError("the envelope's encoding does not end with its signature")
    signature = sign_bytes(private_key, body).encode("ascii")
    return body[:-len(_UNSIGNED_TAIL)] + _SIGNATURE_HEAD + signature + b'"}'


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
    body = signed_part(raw, signature)
    if body is None or not signature_bytes_valid(signer, body, signature):
        return f"bad signature on {etype} by {role} {name!r}: the record was altered"
    return None


def root_refusal(envelope: Envelope, raw: bytes, root: str) -> str | None:
    """Why a record on the ``trust`` topic must not count: only ``keys.trusted`` sets signed
    by the root key do."""
    if envelope.type != "keys.trusted":
        return f"{envelope.type} on trust: only the operator's keys.trusted sets belong there"
    if envelope.signer != root or envelope.signature is None:
        return "keys.trusted not signed by the operator's root key"
    body = signed_part(raw, envelope.signature)
    if body is None or not signature_bytes_valid(root, body, envelope.signature):
        return "bad signature on keys.trusted: the record was altered"
    return None
