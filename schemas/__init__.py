"""Event contracts of speechstream: the envelope, every event, the topic registry, the codec.

This package imports nothing else of the project: every other layer stands on it.
"""

from schemas.codec import MAX_EVENT_BYTES, decode, encode
from schemas.envelope import SCHEMA_VERSION, Envelope, new_envelope
from schemas.events import (
    DeadLetter,
    EvaluationRequested,
    EvaluationStatusChanged,
    MinerRegistered,
    SampleResult,
    ScoreAudited,
    ScoreComputed,
    ScoreManifest,
    SubmissionPublished,
    SubmissionRejected,
)
from schemas.fields import STATUS_RANK, RejectionCode
from schemas.topics import TOPICS, TopicRegistry, TopicSpec

__all__ = [
    "MAX_EVENT_BYTES",
    "SCHEMA_VERSION",
    "STATUS_RANK",
    "TOPICS",
    "DeadLetter",
    "Envelope",
    "EvaluationRequested",
    "EvaluationStatusChanged",
    "MinerRegistered",
    "RejectionCode",
    "SampleResult",
    "ScoreAudited",
    "ScoreComputed",
    "ScoreManifest",
    "SubmissionPublished",
    "SubmissionRejected",
    "TopicRegistry",
    "TopicSpec",
    "decode",
    "encode",
    "new_envelope",
]
