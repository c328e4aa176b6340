"""The ledger: where every submission stands, worked out once from the log (pure: no Kafka).

Every reader of the log (the validator, ``speechstream rescore`` and ``scoring status``, the
evaluators' index of what needs no evaluation, the active-version reader) feeds the events it
reads to a :class:`Ledger` and asks it; the sink's view ``submission_standing`` gives the same
answers from PostgreSQL (``tests/integration/test_ledger_differential.py`` proves it over
random logs). Each rule is written once, here, with its reason:

- **The accepted request of a hash** is its earliest ``(block, submission event id)`` request
  that was not withdrawn; when every request of the hash was withdrawn, the earliest of them
  (the hash then stands withdrawn). SPEC §3: the earliest block holds its place, whatever
  order the log delivered the requests in.
- **A request is withdrawn** by the first ``evaluation.cancelled`` that names it, in log order
  (they share the hash's partition).
- **The score of (hash, scoring version)** is the first one committed, in log order (a hash's
  scores share a partition): evaluators never compute a second one, and a late duplicate
  changes nothing. It counts only when it answers a request of its hash (its request, or the
  request it re-scores, is one read for that hash): a score for a hash never requested, or
  naming a request it does not answer, shows nowhere. Its key stays taken all the same (a
  later score of the pair is still a late duplicate), so the rule is the same whatever order
  the topics are read in.
- **The active scoring version** is the latest ``scoring.activated`` in log order (one
  partition). Before any, each submission counts under the version it was requested for (and
  new requests get the reader's setting).
- **A submission's own status** (under the version it was requested for) is the highest-ranked
  of its QUEUED (its request), PRECHECK and RUNNING events of that version, re-scores' left
  out; of equal rank, the one with the smallest event id (an order every reader sees alike).
  A QUEUED ``evaluation.status`` event (logs written before the request was the QUEUED) says
  nothing the request does not: it counts for nothing.
- **How a submission stands** under the active version (:meth:`Ledger.standing`): withdrawn →
  FAILED without a score, notes ``withdrawn: <reason>``; scored with the active version → that
  score's status, total and reason; requested for the active version → its own status; else
  QUEUED, awaiting the active version's score, its notes naming what the own version gave.
- **Who holds a uid**: each hotkey's latest registry event by ``(block, event id)``
  (registration, handover or revocation); of the hotkeys whose latest event names the uid,
  the earliest by ``(block, event id, hotkey)``, since that block.
- **A uid's submission** (what the validator weighs) is its holder's latest accepted request by
  ``(block, hash)``.
- **The chain's head** is the highest block published.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from schemas.envelope import Envelope
from schemas.events import (
    ChainBlock,
    EvaluationCancelled,
    EvaluationRequested,
    EvaluationStatusChanged,
    MinerRegistered,
    ScoreComputed,
    ScoringActivated,
    UidHandover,
    UidRevoked,
)
from schemas.fields import DEFAULT_SCORING_VERSION, STATUS_RANK


@dataclass(frozen=True, slots=True)
class Request:
    """An accepted evaluation request as the ledger keeps it."""

    event_id: str
    payload: EvaluationRequested

    @property
    def order(self) -> tuple[int, str, str]:
        """Earliest first: block, the submission's event id, the request's."""
        return (self.payload.block, self.payload.source_event_id, self.event_id)


@dataclass(frozen=True, slots=True)
class Standing:
    """How one submission stands under a scoring version: what the leaderboard and the API
    show (``submission_standing``) and what the validator weighs."""

    hash: str
    hotkey: str
    uid: int
    repo_namespace: str
    repo_name: str
    block: int
    scoring_version: str
    status: str
    score: float | None
    notes: str | None
    content_hash: str | None
    request_event_id: str
    withdrawn: str | None
    """Why its request was withdrawn (a displaced duplicate), or None."""

    @property
    def repo(self) -> str:
        return f"{self.repo_namespace}/{self.repo_name}"


@dataclass(frozen=True, slots=True)
class Holding:
    """A uid's holder, since which block, and the event that gave it the uid."""

    uid: int
    hotkey: str
    block: int
    event_id: str


def score_text(score: float) -> str:
    """A score as the notes print it: four decimals, half away from zero, from the double's
    15 significant digits (PostgreSQL's ``round(score::numeric, 4)``)."""
    exact = Decimal(format(score, ".15g"))
    return str(exact.quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP))


@dataclass
class Ledger:
    """Everything a reader has read of the log, and the answers (module docstring)."""

    default_version: str = DEFAULT_SCORING_VERSION
    """The active version before any ``scoring.activated``: the reader's setting."""
    activated: str | None = None
    head: int | None = None
    requests: dict[str, list[Request]] = field(default_factory=dict)
    """hash → every distinct request of it (on ``evaluation.requests``)."""
    rescores: dict[str, Request] = field(default_factory=dict)
    """event id → a re-score (on the re-scoring lane)."""
    withdrawals: dict[str, EvaluationCancelled] = field(default_factory=dict)
    """request event id → the first cancellation naming it."""
    scores: dict[tuple[str, str], tuple[str, ScoreComputed]] = field(default_factory=dict)
    """(hash, scoring version) → (event id, first score)."""
    statuses: dict[tuple[str, str], tuple[int, str, str, str | None]] = field(
        default_factory=dict)
    """(hash, scoring version) → (rank, event id, status, note) of its best own status."""
    registry: dict[str, tuple[int, str, int | None]] = field(default_factory=dict)
    """hotkey → (block, event id, uid) of its latest registry event (uid None: revoked)."""
    _seen_requests: set[str] = field(default_factory=set)

    # -- reading -------------------------------------------------------------------------

    def apply(self, envelope: Envelope) -> None:
        """Take one event into account, in log order per partition (others are ignored)."""
        p = envelope.payload
        if isinstance(p, EvaluationRequested):
            self._request(envelope.event_id, p)
        elif isinstance(p, EvaluationStatusChanged):
            if p.rescore_of is None and p.status != "QUEUED":
                self._status(p.hash, p.scoring_version, p.status, envelope.event_id, p.note)
        elif isinstance(p, ScoreComputed):
            self.scores.setdefault((p.hash, p.scoring_version), (envelope.event_id, p))
        elif isinstance(p, EvaluationCancelled):
            self.withdrawals.setdefault(p.request_event_id, p)
        elif isinstance(p, MinerRegistered | UidHandover | UidRevoked):
            uid = None if isinstance(p, UidRevoked) else p.uid
            mine = (p.block, envelope.event_id, uid)
            known = self.registry.get(p.hotkey)
            if known is None or known[:2] < mine[:2]:
                self.registry[p.hotkey] = mine
        elif isinstance(p, ScoringActivated):
            self.activated = p.scoring_version
        elif isinstance(p, ChainBlock):
            self.head = p.block if self.head is None else max(self.head, p.block)

    def _request(self, event_id: str, p: EvaluationRequested) -> None:
        if event_id in self._seen_requests:
            return  # delivered again: the same request
        self._seen_requests.add(event_id)
        request = Request(event_id, p)
        if p.rescore_of is not None:
            self.rescores[event_id] = request
            return
        self.requests.setdefault(p.hash, []).append(request)
        # A routed request is its submission's QUEUED status.
        self._status(p.hash, p.scoring_version, "QUEUED", event_id, None)

    def _status(self, hash_: str, version: str, status: str, event_id: str,
                note: str | None) -> None:
        rank = STATUS_RANK[status]
        known = self.statuses.get((hash_, version))
        # The higher rank; of equal rank, the smaller event id.
        if known is None or rank > known[0] or (rank == known[0] and event_id < known[1]):
            self.statuses[hash_, version] = (rank, event_id, status, note)

    # -- answers -------------------------------------------------------------------------

    @property
    def active_version(self) -> str:
        """The scoring version whose scores count now, and that new requests get: the
        activated one, before any the reader's setting."""
        return self.activated or self.default_version

    def withdrawal(self, request_event_id: str) -> EvaluationCancelled | None:
        """The cancellation of the request ``request_event_id`` (its re-scores share it)."""
        return self.withdrawals.get(request_event_id)

    def is_withdrawn(self, request: EvaluationRequested, event_id: str) -> bool:
        """Whether a request (or the request a re-score re-emits) was withdrawn."""
        return (event_id in self.withdrawals
                or (request.rescore_of is not None and request.rescore_of in self.withdrawals))

    def has_score(self, hash_: str, scoring_version: str) -> bool:
        """Whether ``(hash, version)`` has a committed score (the pair's key is taken: another
        evaluation of it would change nothing)."""
        return (hash_, scoring_version) in self.scores

    def answers_a_request(self, score: ScoreComputed) -> bool:
        """Whether ``score`` answers a request of its hash: its request, or the request it
        re-scores, is one read for that hash."""
        return any(r.event_id in (score.request_event_id, score.rescore_of)
                   for r in self.requests.get(score.hash, ()))

    def score(self, hash_: str, scoring_version: str) -> ScoreComputed | None:
        """The score that counts for ``(hash, version)``: the first committed, when it answers
        a request of the hash."""
        found = self.scores.get((hash_, scoring_version))
        if found is None or not self.answers_a_request(found[1]):
            return None
        return found[1]

    def accepted(self, hash_: str) -> Request | None:
        """The request that holds the hash's place (module docstring), or None."""
        requests = self.requests.get(hash_)
        if not requests:
            return None
        return min(requests, key=lambda r: (r.event_id in self.withdrawals, r.order))

    def accepted_requests(self, *, withdrawn: bool = False) -> dict[str, Request]:
        """hash → its accepted request; the withdrawn ones only with ``withdrawn``."""
        out = {}
        for hash_ in self.requests:
            request = self.accepted(hash_)
            assert request is not None
            if withdrawn or request.event_id not in self.withdrawals:
                out[hash_] = request
        return out

    def standing(self, hash_: str, version: str | None = None) -> Standing | None:
        """How the submission ``hash_`` stands under ``version`` (by default the activated
        one, before any the version it was requested for); None when no request of it has
        been read."""
        request = self.accepted(hash_)
        if request is None:
            return None
        p = request.payload
        active = version or self.activated or p.scoring_version
        scored = self.score(hash_, active)
        cancelled = self.withdrawals.get(request.event_id)
        if cancelled is not None:
            status, total, notes = "FAILED", None, f"withdrawn: {cancelled.reason}"
        elif scored is not None:
            status, total, notes = scored.status, scored.total_score, scored.reason
        elif p.scoring_version == active:
            status, total, notes = self._own(hash_, p.scoring_version)
        else:
            own_status, own_score, _ = self._own(hash_, p.scoring_version)
            shown = "" if own_score is None else f" {score_text(own_score)}"
            status, total = "QUEUED", None
            notes = (f"awaiting its {active} score ({p.scoring_version}: {own_status}"
                     f"{shown})")
        return Standing(
            hash=hash_, hotkey=p.hotkey, uid=p.uid, repo_namespace=p.repo_namespace,
            repo_name=p.repo_name, block=p.block, scoring_version=active, status=status,
            score=total, notes=notes,
            content_hash=None if scored is None else scored.content_hash,
            request_event_id=request.event_id,
            withdrawn=None if cancelled is None else cancelled.reason,
        )

    def _own(self, hash_: str, version: str) -> tuple[str, float | None, str | None]:
        """Status, score and notes under the version the submission was requested for."""
        scored = self.score(hash_, version)
        if scored is not None:
            return scored.status, scored.total_score, scored.reason
        _, _, status, note = self.statuses.get((hash_, version), (0, "", "QUEUED", None))
        return status, None, note

    def standings(self, version: str | None = None) -> dict[str, Standing]:
        """hash → how it stands, for every requested hash."""
        out = {}
        for hash_ in self.requests:
            standing = self.standing(hash_, version)
            assert standing is not None
            out[hash_] = standing
        return out

    def holders(self) -> dict[int, Holding]:
        """uid → who holds it, since which block (module docstring)."""
        held: dict[int, Holding] = {}
        for hotkey, (block, event_id, uid) in self.registry.items():
            if uid is None:
                continue
            known = held.get(uid)
            if known is None or (block, event_id, hotkey) < (known.block, known.event_id,
                                                             known.hotkey):
                held[uid] = Holding(uid, hotkey, block, event_id)
        return held

    def submissions_by_uid(self, version: str | None = None
                           ) -> dict[int, tuple[Holding, Standing | None]]:
        """uid → its holder and the standing of the holder's latest submission (by block,
        then hash), None when it has none; every held uid, in uid order."""
        latest: dict[str, Request] = {}
        for request in self.accepted_requests(withdrawn=True).values():
            p = request.payload
            kept = latest.get(p.hotkey)
            if kept is None or (kept.payload.block, kept.payload.hash) < (p.block, p.hash):
                latest[p.hotkey] = request
        out: dict[int, tuple[Holding, Standing | None]] = {}
        for uid, holding in sorted(self.holders().items()):
            request = latest.get(holding.hotkey)
            out[uid] = (holding, None if request is None
                        else self.standing(request.payload.hash, version))
        return out
