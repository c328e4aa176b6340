"""Every event speechstream exchanges; the envelope in ``schemas.envelope`` carries one of these."""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.fields import (
    DEFAULT_SCORING_VERSION,
    MAX_SAMPLES,
    MAX_UIDS,
    NO_NUL,
    ActiveVersion,
    AuditVerdict,
    Block,
    EvaluationStatus,
    EventId,
    FinalStatus,
    HashStr,
    Hotkey,
    LongText,
    Name,
    RejectionCode,
    RepoPart,
    Signature,
    Status,
    SubmissionType,
    Text,
    Uid,
    Version,
)
from schemas.hashing import submission_hash


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Signed(_Event):
    """An event signed by its hotkey: the signature covers every other field."""

    def signed_fields(self) -> dict[str, Any]:
        """The fields the signature covers (everything but ``signature``)."""
        return self.model_dump(mode="json", exclude={"signature"})


class MinerRegistered(_Signed):
    """A miner claims a uid with its hotkey (published by the miner, signed by the hotkey)."""

    type: Literal["miner.registered"] = "miner.registered"
    hotkey: Hotkey
    uid: Uid
    coldkey: Name | None = None
    block: Block
    signature: Signature


class _Submission(_Signed):
    """A model repo announced for evaluation: the fields every submission carries."""

    repo_namespace: RepoPart
    repo_name: RepoPart
    revision: Annotated[str, Field(min_length=1, max_length=64, pattern=NO_NUL)] | None = None
    config_template: Annotated[str, Field(min_length=1, max_length=64, pattern=NO_NUL)] = "default"
    competition_id: Annotated[str, Field(min_length=1, max_length=32, pattern=NO_NUL)] = "d1"
    hotkey: Hotkey
    block: Block
    hash: HashStr

    @property
    def repo(self) -> str:
        """``namespace/name``, the repo's identity for duplicate detection."""
        return f"{self.repo_namespace}/{self.repo_name}"

    def expected_hash(self) -> str:
        """The hash SPEC §3 defines for this submission's fields."""
        return submission_hash(
            self.repo_namespace, self.repo_name, self.config_template, self.hotkey
        )


class SubmissionPublished(_Submission):
    """A miner announces a model repo for evaluation (signed by the hotkey)."""

    type: Literal["submission.published"] = "submission.published"
    signature: Signature


class SubmissionAttested(_Submission):
    """A submission entered through the REST API on a miner's behalf: not signed by the miner
    but attested by the operator (``operator`` is the operator's public key, ``signature`` its
    signature over every other field). The intake worker accepts it only from the operator's
    configured key."""

    type: Literal["submission.attested"] = "submission.attested"
    operator: Hotkey
    signature: Signature


class UidReassigned(_Signed):
    """The operator hands a uid to a new hotkey (what the chain does when it deregisters a
    miner): ``operator`` is the operator's public key, ``signature`` its signature over every
    other field. The hotkey that held the uid loses it; its later submissions are rejected.
    The intake worker accepts it only from the operator's configured key."""

    type: Literal["uid.reassigned"] = "uid.reassigned"
    uid: Uid
    hotkey: Hotkey
    """The hotkey the uid is handed to."""
    block: Block
    """Chain height of the handover."""
    operator: Hotkey
    signature: Signature


class UidHandover(_Event):
    """An accepted ``uid.reassigned``, with the hotkey that held the uid before it
    (``previous``, None for a free uid). The intake worker sends it from the uid's partition
    to the new hotkey's (and back to the uid's when that hotkey holds another uid); once the
    new hotkey has the uid, it is the new hotkey's entry in the miner registry."""

    type: Literal["uid.handover"] = "uid.handover"
    uid: Uid
    hotkey: Hotkey
    previous: Hotkey | None = None
    block: Block
    source_event_id: EventId
    """The ``uid.reassigned`` event."""


class UidRevoked(_Event):
    """A hotkey lost its uid to a handover: ``uid`` went to ``to`` at ``block``. Keyed by the
    hotkey that lost it, on the worker's hotkey topic and in the miner registry."""

    type: Literal["uid.revoked"] = "uid.revoked"
    hotkey: Hotkey
    uid: Uid
    to: Hotkey
    block: Block
    source_event_id: EventId
    """The ``uid.reassigned`` event."""


class SubmissionRejected(_Event):
    """A registration or submission that failed validation, with the reason."""

    type: Literal["submission.rejected"] = "submission.rejected"
    code: RejectionCode
    message: Text
    source_event_id: EventId
    source_type: Literal["miner.registered", "submission.published", "submission.attested",
                         "uid.reassigned"]
    hotkey: Name | None = None
    uid: Uid | None = None
    hash: HashStr | None = None
    repo_namespace: Name | None = None
    repo_name: Name | None = None
    block: Block | None = None


class EvaluationRequested(_Event):
    """A validated submission routed to the evaluators, keyed by its hash."""

    type: Literal["evaluation.requested"] = "evaluation.requested"
    hash: HashStr
    hotkey: Hotkey
    uid: Uid
    repo_namespace: RepoPart
    repo_name: RepoPart
    revision: Name | None = None
    config_template: Name = "default"
    competition_id: Name = "d1"
    block: Block
    scoring_version: Version = DEFAULT_SCORING_VERSION
    source_event_id: EventId
    source_type: SubmissionType = "submission.published"
    rescore_of: EventId | None = None
    """Set on a re-score (``speechstream rescore``): the event id of the accepted request it
    re-emits for another scoring version. A re-score is the submission's evaluation again, not
    a new submission: a FAILED re-score frees no rate-limit window."""


class EvaluationCancelled(_Event):
    """An evaluation request withdrawn, keyed by its hash: its submission was displaced by an
    earlier submission of the same repo (SPEC §3: the later block is invalid; the earliest
    keeps its place) after the request had been routed. An evaluator that has not started it
    skips it, and its re-scores; an evaluation already finished keeps its score, which the
    validators do not count and the sink shows as a withdrawn duplicate."""

    type: Literal["evaluation.cancelled"] = "evaluation.cancelled"
    hash: HashStr
    request_event_id: EventId
    """The withdrawn ``evaluation.requested`` (on ``evaluation.requests``); a re-score names it
    in ``rescore_of``."""
    hotkey: Hotkey
    uid: Uid | None = None
    block: Block
    code: RejectionCode
    reason: Text
    """E.g. ``duplicate of ns/name submitted earlier at block B (hash H)``."""
    displaced_by: EventId
    """The displacing submission's event id (the miner's, or the REST API's attested one)."""
    displaced_by_hash: HashStr


class EvaluationStatusChanged(_Event):
    """A submission moved to PRECHECK or RUNNING (an evaluator sends it). Nothing sends QUEUED
    any more: a routed request is its submission's QUEUED status; ``QUEUED`` stays a valid
    status here for logs written when the intake worker still sent it."""

    type: Literal["evaluation.status"] = "evaluation.status"
    hash: HashStr
    status: EvaluationStatus
    scoring_version: Version = DEFAULT_SCORING_VERSION
    evaluator: Name | None = None
    note: Text | None = None
    rescore_of: EventId | None = None
    """Set on a re-score's status: the accepted request it re-scores (it leaves the
    submission's own status alone)."""


class SampleResult(_Event):
    """One scored sample: its inputs, CE, WER, transcription, or the error that stopped it."""

    index: Annotated[int, Field(ge=0, lt=MAX_SAMPLES)]
    text: LongText
    speaker: Name | None = None
    description: LongText | None = None
    """The voice the sample was asked for (scores written before it was kept have none)."""
    ce: float | None = None
    wer: float | None = None
    transcription: LongText | None = None
    score: float | None = None
    error: Text | None = None
    note: Text | None = None
    """How the sample was scored when a rule applied (a non-finite CE counted as term 0)."""


class ScoreManifest(_Event):
    """What reproduces a score: the model as evaluated, the draw, the reference voice and ASR,
    the software and the device. Scores written before manifests existed have none."""

    repo_namespace: Name
    repo_name: Name
    config_template: Name = "default"
    model_revision: Name | None = None
    """The revision actually evaluated (a commit on a hub; ``local`` for a local model)."""
    content_hash: Name | None = None
    """sha256 of the safetensors weights as evaluated."""
    scoring_version: Version
    draw_seed: Annotated[int, Field(ge=0, lt=2**64)]
    """The 64-bit seed of the draw, from ``(hash, scoring_version)``."""
    prompt_ids: list[Annotated[int, Field(ge=0, lt=2**31)]] = Field(
        default_factory=list, max_length=MAX_SAMPLES)
    """Each drawn sample's prompt: its position in the prompt set."""
    speakers: list[Name] = Field(default_factory=list, max_length=MAX_SAMPLES)
    """Each drawn sample's speaker, by name."""
    prompt_set_hash: Name
    """sha256 of the shipped prompt set and speakers."""
    reference_voice: Name | None = None
    """Name and version of the reference voice, e.g. ``flite 2.2 (slt)``."""
    reference_cached: list[bool] = Field(default_factory=list, max_length=MAX_SAMPLES)
    """Whether each drawn sample's reference audio came from the reference cache, in draw
    order; empty on scores written before it was recorded."""
    asr: Name | None = None
    """Name and version of the transcriber, e.g. ``pocketsphinx 5.0.4 (en-us)``."""
    generation: dict[Name, Name | int | float | bool] = Field(default_factory=dict,
                                                                  max_length=64)
    """Generation settings: decoding, seed, samples, audio length cap, batch size…"""
    torch: Name
    transformers: Name | None = None
    cuda: Name | None = None
    device: Name
    dtype: Name | None = None
    deterministic: bool = False
    """Whether torch ran with deterministic algorithms."""
    evaluator: Name | None = None


class ScoreComputed(_Event):
    """The end of an evaluation: COMPLETED with a total and samples, or FAILED with a reason."""

    type: Literal["score.computed"] = "score.computed"
    hash: HashStr
    scoring_version: Version = DEFAULT_SCORING_VERSION
    status: FinalStatus
    total_score: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    reason: Text | None = None
    samples: list[SampleResult] = Field(default_factory=list, max_length=MAX_SAMPLES)
    timings: dict[Name, float] = Field(default_factory=dict, max_length=64)
    revision: Name | None = None
    content_hash: Name | None = None
    """sha256 of the safetensors weights as evaluated (byte-identical weights share it)."""
    evaluator: Name
    request_event_id: EventId
    manifest: ScoreManifest | None = None
    """What reproduces this score; None in scores written before manifests existed."""
    rescore_of: EventId | None = None
    """Set on a re-score's score: the accepted request it re-scores (it lives beside the
    submission's own score, in ``scores``, and never moves the submission's row)."""


MAX_AUDIO_BYTES = 80 * 1024
"""The most one encoding of one clip may hold: both in base64 (a third larger) leave room in
an event (``MAX_EVENT_BYTES``, 256 KiB). A clip of the longest sample (``max_audio_s``, 8 s)
at the evaluator's bitrates takes about 25 KiB in each, white noise included."""
AudioB64 = Annotated[str, Field(min_length=4, max_length=(MAX_AUDIO_BYTES + 2) // 3 * 4,
                                pattern=r"^[A-Za-z0-9+/]*={0,2}$")]
AudioClipKind = Literal["generated", "reference"]


class SampleAudio(_Event):
    """One clip an evaluation listened to: the sample the model generated, or the reference
    voice's reading of the same text, encoded twice (Ogg/Opus, and MP3 for browsers that play
    no Opus). Written in the score's transaction; its score is ``score_event_id``, and
    ``(score_event_id, index, clip)`` names it, so a replay or a re-delivered request never
    stores it twice. Only the evaluator named may write it (signed by its key), and readers
    show a score's clips only from the score's own evaluator."""

    type: Literal["sample.audio"] = "sample.audio"
    hash: HashStr
    scoring_version: Version
    evaluator: Name
    score_event_id: EventId
    request_event_id: EventId
    index: Annotated[int, Field(ge=0, lt=MAX_SAMPLES)]
    clip: AudioClipKind
    sample_rate: Annotated[int, Field(ge=8000, le=48000)]
    duration_s: Annotated[float, Field(ge=0.0, le=600.0)]
    opus_b64: AudioB64
    mp3_b64: AudioB64


class SubmissionFailed(_Event):
    """An evaluation that ended FAILED, keyed by the submission's hotkey: a failed submission
    does not hold its hotkey's rate-limit window (SPEC §3). The evaluator publishes it in the
    transaction of the FAILED score."""

    type: Literal["submission.failed"] = "submission.failed"
    hash: HashStr
    hotkey: Hotkey
    block: Block
    scoring_version: Version
    reason: Text | None = None
    score_event_id: EventId


class ScoreAudited(_Event):
    """An audit's re-score of a score, on the auditor's own device: ``agree`` when both totals
    lie within ``tolerance`` (and both are COMPLETED or both FAILED), ``disagree`` otherwise,
    ``unavailable`` when the model cannot be scored again as it was (gone from its source,
    weights changed, or a score without a manifest)."""

    type: Literal["score.audited"] = "score.audited"
    hash: HashStr
    scoring_version: Version
    verdict: AuditVerdict
    score_event_id: EventId
    """The audited ``score.computed`` event."""
    evaluator: Name
    """The evaluator that produced the audited score."""
    auditor: Name
    scored_status: FinalStatus
    scored_total: float | None = None
    audited_status: FinalStatus | None = None
    audited_total: float | None = None
    tolerance: Annotated[float, Field(ge=0.0)]
    reason: Text | None = None
    differences: dict[Name, list[Any]] = Field(default_factory=dict, max_length=64)
    """Manifest fields that differ: field → ``[scored, audited]``."""
    manifest: ScoreManifest | None = None
    """The audit's own manifest."""


class DeadLetter(_Event):
    """A record no service could decode, kept whole with where it came from and why."""

    type: Literal["deadletter"] = "deadletter"
    raw_b64: str
    raw_size: int
    """Size of the whole record; raw_b64 holds at most the first 512 KiB of it."""
    topic: str
    partition: int | None = None
    offset: int | None = None
    error: str
    consumer: str


class ChainBlock(_Event):
    """The chain's head block, as a chain adapter (or ``speechstream chain tick``) saw it."""

    type: Literal["chain.block"] = "chain.block"
    block: Block


MAX_INVALID_REASON = 256
"""The longest ``invalid`` reason an entry holds (the validator cuts a longer one): with every
other field bounded by its source's schema, a vector of 4,096 entries stays within
``schemas.codec.MAX_VECTOR_BYTES`` (``tests/unit/consumers/test_vector_size.py``)."""


class WeightEntry(_Event):
    """One uid in a weights vector: the submission that counted for it and how it fared."""

    uid: Uid
    hotkey: Name | None = None
    hash: HashStr | None = None
    repo: Annotated[str, Field(
        max_length=193, pattern=r"^[A-Za-z0-9._-]{1,96}/[A-Za-z0-9._-]{1,96}$")] | None = None
    """``namespace/name``, each a ``RepoPart``."""
    block: Block | None = None
    status: Status | None = None
    score: float | None = None
    content_hash: Name | None = None
    win_rate: float | None = None
    """Wins over the other uids, divided by their number; None when invalid (``-inf``)."""
    invalid: Annotated[str, Field(max_length=MAX_INVALID_REASON, pattern=NO_NUL)] | None = None
    """Why the uid does not compete this epoch; None when it does."""
    weight: Annotated[float, Field(ge=0.0, le=1.0)]


class WeightsComputed(_Event):
    """A validator's weights vector at one epoch (SPEC §5): ``uids`` (ascending) and their
    ``weights``, as a chain adapter sets them, and an entry per uid with the submission that
    counted for it (its hash) and how it fared."""

    type: Literal["weights.computed"] = "weights.computed"
    validator: Annotated[str, Field(min_length=1, max_length=128)]
    epoch: Block
    block: Block
    """The head block that ran the epoch; submissions after it do not count."""
    uids: list[Uid] = Field(max_length=MAX_UIDS)
    weights: list[float] = Field(max_length=MAX_UIDS)
    entries: list[WeightEntry] = Field(max_length=MAX_UIDS)

    @model_validator(mode="after")
    def _entries_match(self) -> WeightsComputed:
        if self.uids != [e.uid for e in self.entries] or self.weights != [
            e.weight for e in self.entries
        ]:
            raise ValueError("uids and weights must list the entries' uids and weights")
        return self

    @classmethod
    def of(cls, validator: str, epoch: int, block: int,
           entries: list[WeightEntry]) -> WeightsComputed:
        """The vector of ``entries`` (``uids`` and ``weights`` taken from them)."""
        return cls(validator=validator, epoch=epoch, block=block,
                   uids=[e.uid for e in entries], weights=[e.weight for e in entries],
                   entries=entries)


class MinerboardUpdated(_Event):
    """Which submission stands for a uid on the minerboard (``POST /minerboard_update``)."""

    type: Literal["minerboard.updated"] = "minerboard.updated"
    hash: HashStr
    uid: Uid
    hotkey: Annotated[str, Field(min_length=1, max_length=128)]
    block: Block


class ScoringActivated(_Event):
    """The scoring version whose scores count: the leaderboard, the API and the validators'
    weights use it, and the intake worker requests new submissions for it. The latest one on
    ``scoring.active`` holds (``speechstream scoring activate``)."""

    type: Literal["scoring.activated"] = "scoring.activated"
    scoring_version: ActiveVersion
    reason: Text | None = None


TRUST_ROLES = ("intake", "evaluator", "auditor", "sink", "validator", "api", "chain")
"""The roles that sign with a key the operator trusts (``schemas.topics.Role`` less the miners,
whose hotkeys sign their own events, and the operator, whose key is the root)."""
TrustRole = Literal["intake", "evaluator", "auditor", "sink", "validator", "api", "chain"]


class TrustedKey(_Event):
    """One key the operator trusts: its public key, the role it speaks for, and the name it
    speaks under (an evaluator's, auditor's or validator's id: the events it signs must name
    it)."""

    key: Hotkey
    role: TrustRole
    name: Name


class KeysTrusted(_Event):
    """The operator's whole set of trusted keys, version ``version`` (``speechstream trust``);
    signed by the operator's root key, the one every service is configured with. The highest
    version a reader has seen holds: an older set replayed changes nothing."""

    type: Literal["keys.trusted"] = "keys.trusted"
    version: Annotated[int, Field(ge=1, lt=2**31)]
    keys: list[TrustedKey] = Field(default_factory=list, max_length=MAX_UIDS)
    reason: Text | None = None

    @model_validator(mode="after")
    def _keys_unique(self) -> KeysTrusted:
        if len({k.key for k in self.keys}) != len(self.keys):
            raise ValueError("a key is listed twice")
        return self


Event = Annotated[
    MinerRegistered
    | SubmissionPublished
    | SubmissionAttested
    | SubmissionRejected
    | EvaluationRequested
    | EvaluationStatusChanged
    | EvaluationCancelled
    | ScoreComputed
    | SampleAudio
    | SubmissionFailed
    | ScoreAudited
    | DeadLetter
    | ChainBlock
    | WeightsComputed
    | MinerboardUpdated
    | ScoringActivated
    | UidReassigned
    | UidHandover
    | UidRevoked
    | KeysTrusted,
    Field(discriminator="type"),
]

EVENT_TYPES: dict[str, type[BaseModel]] = {
    cls.model_fields["type"].default: cls for cls in get_args(get_args(Event)[0])
}
"""Each event type's model, by its ``type``: the members of :data:`Event`."""
