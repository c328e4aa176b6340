"""The topic registry: the only place topic names, partitions, keys and policies are defined."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from schemas.codec import MAX_VECTOR_BYTES

INFINITE = -1

Role = Literal[
    "miner", "intake", "evaluator", "auditor", "sink", "validator", "api", "operator", "chain",
]
ROLES: tuple[Role, ...] = (
    "miner", "intake", "evaluator", "auditor", "sink", "validator", "api", "operator", "chain",
)
"""Who talks to the log: the miners, the intake worker (Faust), the evaluators, the auditors,
the PostgreSQL sink, the validators, the REST API, the operator's commands (``rescore``,
``scoring activate``, ``operator reassign-uid``) and the chain adapter (``chain tick``)."""
RECORD_OVERHEAD_BYTES = 64 * 1024
"""Room for a record batch's framing, the key and headers around one event's value."""


@dataclass(frozen=True)
class TopicSpec:
    """One topic: its base name, partition count, what its key is, and its cleanup policy."""

    name: str
    partitions: int
    key: str
    events: tuple[str, ...]
    cleanup_policy: Literal["delete", "compact"] = "delete"
    retention_ms: int = INFINITE
    log_append_time: bool = False
    """Records stamped by the broker when appended (``message.timestamp.type=LogAppendTime``),
    a time no client can choose: the intake judges a claimed block by the chain's head at that
    time."""
    description: str = ""
    max_message_bytes: int | None = None
    """The largest record batch the broker accepts on it; None: the broker's default (1 MiB)."""
    writers: tuple[Role, ...] = ()
    """The roles that produce to it (the ACLs of ``speechstream acl plan`` follow from it)."""
    readers: tuple[Role, ...] = ()
    """The roles that consume it (in a group or reading it whole)."""

    def config(self) -> dict[str, str]:
        """Topic-level broker configuration."""
        cfg = {"cleanup.policy": self.cleanup_policy}
        if self.log_append_time:
            cfg["message.timestamp.type"] = "LogAppendTime"
        if self.cleanup_policy == "delete":
            cfg["retention.ms"] = str(self.retention_ms)
        if self.max_message_bytes is not None:
            cfg["max.message.bytes"] = str(self.max_message_bytes)
        return cfg


REGISTRATIONS = TopicSpec(
    "registrations", 4, "uid", ("miner.registered", "uid.reassigned"),
    description="signed registrations published by miners, and the operator's signed uid "
    "handovers",
    log_append_time=True,
    writers=("miner", "operator"), readers=("intake",),
)
CLAIMED = TopicSpec(
    "registrations.claimed", 4, "hotkey", ("miner.registered", "uid.handover", "uid.revoked"),
    description="internal: registrations and handovers that claimed their uid, re-keyed by "
    "the hotkey that gets it; the hotkey a handover takes it from",
    writers=("intake",), readers=("intake",),
)
RELEASED = TopicSpec(
    "registrations.released", 4, "uid", ("miner.registered", "uid.handover"),
    description="internal: claims a hotkey check refused, handed back to the uid's owner table",
    writers=("intake",), readers=("intake",),
)
MINERS = TopicSpec(
    "miners", 4, "hotkey", ("miner.registered", "uid.handover", "uid.revoked"),
    cleanup_policy="compact",
    description="the validated miner registry (hotkey → uid; a revoked hotkey holds none); "
    "`operator reassign-uid` reads who holds the uid",
    writers=("intake",), readers=("sink", "validator", "operator"),
)
SUBMISSIONS = TopicSpec(
    "submissions", 4, "hotkey", ("submission.published", "submission.attested"),
    description="submissions signed by miners, or attested by the operator (REST API)",
    log_append_time=True,
    writers=("miner", "api"), readers=("intake",),
)
ACCEPTED = TopicSpec(
    "submissions.accepted", 4, "repo", ("evaluation.requested",),
    description="internal: submissions past the per-hotkey checks, re-keyed by repo",
    writers=("intake",), readers=("intake",),
)
REJECTED = TopicSpec(
    "submissions.rejected", 4, "hotkey", ("submission.rejected",),
    description="every rejected registration or submission, with its reason",
    writers=("intake",), readers=("intake", "sink"),
)
EVALUATION_REQUESTS = TopicSpec(
    "evaluation.requests", 4, "hash", ("evaluation.requested",),
    description="valid work for the evaluators",
    writers=("intake",), readers=("evaluator", "sink", "validator", "operator"),
)
RESCORES = TopicSpec(
    "evaluation.rescores", 4, "hash", ("evaluation.requested",),
    description="re-scores of accepted requests for another scoring version "
    "(`speechstream rescore`): the evaluators' lower-priority lane",
    writers=("operator",), readers=("evaluator", "operator"),
)
CANCELLATIONS = TopicSpec(
    "evaluation.cancellations", 4, "hash", ("evaluation.cancelled",),
    description="evaluation requests withdrawn: displaced by an earlier duplicate; "
    "evaluators read it whole to skip them",
    writers=("intake",), readers=("evaluator", "sink", "validator", "operator"),
)
EVALUATION_STATUS = TopicSpec(
    "evaluation.status", 4, "hash", ("evaluation.status",),
    description="PRECHECK and RUNNING (a routed request is its submission's QUEUED status)",
    writers=("intake", "evaluator"), readers=("sink", "validator"),
)
SCORES = TopicSpec(
    "scores", 4, "hash", ("score.computed",),
    description="COMPLETED or FAILED evaluations, written transactionally by the evaluators",
    writers=("evaluator",), readers=("evaluator", "auditor", "sink", "validator", "operator"),
)
AUDIO = TopicSpec(
    "scores.audio", 4, "hash", ("sample.audio",),
    description="the clips each evaluation listened to (generated and reference, Opus and "
    "MP3), written in the score's transaction; the sink keeps the newest submissions' "
    "(SPEECHSTREAM_SINK_AUDIO_KEEP_PER_UID)",
    retention_ms=30 * 24 * 3600 * 1000,
    writers=("evaluator",), readers=("sink",),
)
FAILED = TopicSpec(
    "submissions.failed", 4, "hotkey", ("submission.failed",),
    description="FAILED evaluations, keyed by hotkey: they free the rate-limit window",
    writers=("evaluator",), readers=("intake",),
)
AUDITS = TopicSpec(
    "scores.audited", 4, "hash", ("score.audited",),
    description="audits: re-scores of a sample of the scores on an auditor's device",
    writers=("auditor",), readers=("sink",),
)
CHAIN_BLOCKS = TopicSpec(
    "chain.blocks", 1, "none", ("chain.block",),
    description="the chain's head block, from a chain adapter or `speechstream chain tick`",
    log_append_time=True,
    writers=("chain",), readers=("intake", "validator", "operator"),
)
WEIGHTS = TopicSpec(
    "weights", 1, "validator id", ("weights.computed",),
    description="each validator's weights vector, one event an epoch",
    max_message_bytes=MAX_VECTOR_BYTES + RECORD_OVERHEAD_BYTES,
    writers=("validator",), readers=("validator", "sink"),
)
MINERBOARD = TopicSpec(
    "minerboard", 4, "uid", ("minerboard.updated",), cleanup_policy="compact",
    description="which submission stands for each uid on the minerboard",
    writers=("validator", "api"), readers=("sink",),
)
SCORING_ACTIVE = TopicSpec(
    "scoring.active", 1, "\"active\"", ("scoring.activated",), cleanup_policy="compact",
    description="the scoring version whose scores count (`speechstream scoring activate`)",
    writers=("operator",), readers=("intake", "sink", "validator", "operator"),
)
DEADLETTER = TopicSpec(
    "deadletter", 1, "original key", ("deadletter",),
    description="records no service could decode, with the reason",
    writers=("intake", "evaluator", "auditor", "sink", "validator"), readers=("sink",),
)

TRUST = TopicSpec(
    "trust", 1, "\"keys\"", ("keys.trusted",),
    description="the operator's signed set of trusted keys (`speechstream trust`): every "
    "reader checks the events it reads against the highest version",
    writers=("operator",),
    readers=("intake", "evaluator", "auditor", "sink", "validator", "api", "operator"),
)

# The intake worker's Faust tables (the sink's PostgreSQL tables are sinks.tables.TABLES).
# Faust names each changelog ``<app id>-<table>-changelog``
# (the app id carries the topic prefix); the worker creates them before it starts, compacted
# and with the partitions of the topics they are co-partitioned with, so no agent ever writes
# to a changelog the broker has not finished creating.
INTAKE_TABLES: dict[str, str] = {
    "uid_owner": "uid → the hotkey registered for it",
    "hotkey_uid": "hotkey → its uid",
    "hotkey_registered": "hotkey → the block of its registration",
    "uid_handover": "uid → the latest handover of it (event id, previous owner, block)",
    "hotkey_reassigned": "hotkey → the uid handed away from it (uid, block, to)",
    "last_accepted": "hotkey → the blocks of its accepted submissions",
    "repo_holder": "repo → the submission that holds it",
}
TABLE_PARTITIONS = 4


def changelog_spec(app_id: str, table: str) -> TopicSpec:
    """The changelog topic of ``table`` in the worker whose Faust app id is
    ``<prefix><app_id>``."""
    if table not in INTAKE_TABLES:
        raise KeyError(f"no table {table!r} in the registry")
    return TopicSpec(
        f"{app_id}-{table}-changelog", TABLE_PARTITIONS, "table key", ("table entry",),
        cleanup_policy="compact",
        description=f"changelog of table {table}: {INTAKE_TABLES[table]}",
        writers=("intake",), readers=("intake",),
    )


def changelog_specs(app_id: str) -> tuple[TopicSpec, ...]:
    """The changelog topics of every table of the worker ``app_id``."""
    return tuple(changelog_spec(app_id, table) for table in INTAKE_TABLES)


def topics_written_by(role: Role) -> tuple[TopicSpec, ...]:
    """The registry's topics ``role`` produces to."""
    return tuple(spec for spec in ALL_TOPICS if role in spec.writers)


def topics_read_by(role: Role) -> tuple[TopicSpec, ...]:
    """The registry's topics ``role`` consumes."""
    return tuple(spec for spec in ALL_TOPICS if role in spec.readers)


ALL_TOPICS: tuple[TopicSpec, ...] = (
    REGISTRATIONS,
    CLAIMED,
    RELEASED,
    MINERS,
    SUBMISSIONS,
    ACCEPTED,
    REJECTED,
    EVALUATION_REQUESTS,
    RESCORES,
    CANCELLATIONS,
    EVALUATION_STATUS,
    SCORES,
    AUDIO,
    FAILED,
    AUDITS,
    CHAIN_BLOCKS,
    WEIGHTS,
    MINERBOARD,
    SCORING_ACTIVE,
    DEADLETTER,
    TRUST,
)

_BY_NAME = {spec.name: spec for spec in ALL_TOPICS}


@dataclass(frozen=True)
class TopicRegistry:
    """Full topic names under one prefix (tests use a unique prefix each)."""

    prefix: str = "speechstream."

    def name(self, spec: TopicSpec) -> str:
        """The full name of ``spec`` under this prefix."""
        return f"{self.prefix}{spec.name}"

    @property
    def registrations(self) -> str:
        return self.name(REGISTRATIONS)

    @property
    def claimed(self) -> str:
        return self.name(CLAIMED)

    @property
    def released(self) -> str:
        return self.name(RELEASED)

    @property
    def miners(self) -> str:
        return self.name(MINERS)

    @property
    def submissions(self) -> str:
        return self.name(SUBMISSIONS)

    @property
    def accepted(self) -> str:
        return self.name(ACCEPTED)

    @property
    def rejected(self) -> str:
        return self.name(REJECTED)

    @property
    def evaluation_requests(self) -> str:
        return self.name(EVALUATION_REQUESTS)

    @property
    def rescores(self) -> str:
        return self.name(RESCORES)

    @property
    def cancellations(self) -> str:
        return self.name(CANCELLATIONS)

    @property
    def evaluation_status(self) -> str:
        return self.name(EVALUATION_STATUS)

    @property
    def scores(self) -> str:
        return self.name(SCORES)

    @property
    def audio(self) -> str:
        return self.name(AUDIO)

    @property
    def failed(self) -> str:
        return self.name(FAILED)

    @property
    def audits(self) -> str:
        return self.name(AUDITS)

    @property
    def chain_blocks(self) -> str:
        return self.name(CHAIN_BLOCKS)

    @property
    def weights(self) -> str:
        return self.name(WEIGHTS)

    @property
    def minerboard(self) -> str:
        return self.name(MINERBOARD)

    @property
    def scoring_active(self) -> str:
        return self.name(SCORING_ACTIVE)

    @property
    def deadletter(self) -> str:
        return self.name(DEADLETTER)

    @property
    def trust(self) -> str:
        return self.name(TRUST)

    def spec_of(self, topic: str) -> TopicSpec | None:
        """The spec of the full topic name ``topic`` under this prefix; None for a topic the
        registry does not define (a worker's changelog, another deployment's)."""
        if not topic.startswith(self.prefix):
            return None
        return _BY_NAME.get(topic[len(self.prefix):])

    def changelog(self, app_id: str, table: str) -> str:
        """The full name of ``table``'s changelog for the worker ``app_id``."""
        return self.name(changelog_spec(app_id, table))

    def internal_prefix(self, app_id: str) -> str:
        """The prefix of every topic Faust names after the worker ``app_id`` (its tables'
        changelogs, its repartition and assignor topics)."""
        return f"{self.prefix}{app_id}-"

    def all(self) -> list[tuple[str, TopicSpec]]:
        """Every ``(full name, spec)``."""
        return [(self.name(spec), spec) for spec in ALL_TOPICS]


TOPICS = TopicRegistry()
