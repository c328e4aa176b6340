"""Event contracts of speechstream: the envelope, every event, the topic registry, the codec."""

from schemas.codec import MAX_EVENT_BYTES, decode, encode
from schemas.envelope import SCHEMA_VERSION, Envelope, new_envelope
from schemas.events import (
    DeadLetter,
    EvaluationRequested,
    EvaluationStatusChanged,
    MinerRegistered,
    RejectionCode,
    SampleResult,
    ScoreComputed,
    SubmissionPublished,
    SubmissionRejected,
)
from schemas.exceptions import DecodeError, SchemaError, SpeechstreamError
from schemas.topics import TOPICS, TopicRegistry, TopicSpec

__all__ = [
    "MAX_EVENT_BYTES",
    "SCHEMA_VERSION",
    "TOPICS",
    "DeadLetter",
    "DecodeError",
    "Envelope",
    "EvaluationRequested",
    "EvaluationStatusChanged",
    "MinerRegistered",
    "RejectionCode",
    "SampleResult",
    "SchemaError",
    "ScoreComputed",
    "SpeechstreamError",
    "SubmissionPublished",
    "SubmissionRejected",
    "TopicRegistry",
    "TopicSpec",
    "decode",
    "encode",
    "new_envelope",
]
