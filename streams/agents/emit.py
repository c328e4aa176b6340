"""Building and sending the agents' downstream events with ids derived from their input."""

from __future__ import annotations

import faust

from schemas.codec import encode
from schemas.envelope import Envelope, derived_event_id, new_envelope
from schemas.events import (
    EvaluationRequested,
    MinerRegistered,
    SubmissionAttested,
    SubmissionPublished,
    SubmissionRejected,
    UidHandover,
    UidReassigned,
)
from speechstream.signer import Signer
from streams.metrics import StreamsMetrics
from streams.rules import Rejection

PRODUCER_NAME = "speechstream-streams"


async def emit(
    topic: faust.TopicT, payload: object, *, key: str, source: Envelope, stage: str,
    signer: Signer | None = None,
) -> None:
    """Send ``payload`` keyed by ``key`` with an event id derived from ``source`` and stage,
    signed with ``signer`` when there is one (``schemas.trust``)."""
    env = new_envelope(payload, key=key, producer=PRODUCER_NAME,
                       event_id=derived_event_id(source.event_id, stage))
    value = encode(env) if signer is None else signer.encode(env)
    # Straight to the app's producer (Faust's own ``topic.send`` adds a message future,
    # serializer lookups and send callbacks per record, none of which this uses): the record
    # is flushed, like every other send, before Faust commits the offset of its source.
    await topic.app.producer.send(topic.get_topic_name(), key.encode(), value,
                                  None, None, None)


async def reject(
    topic: faust.TopicT, source: Envelope, rejection: Rejection, metrics: StreamsMetrics,
    *, stage: str = "rejected", signer: Signer | None = None,
) -> None:
    """Publish a ``submission.rejected`` for ``source`` with the rejection's code and reason."""
    p = source.payload
    if isinstance(p, MinerRegistered | UidReassigned):
        extra: dict[str, object] = {"uid": p.uid, "source_type": p.type}
    elif isinstance(p, UidHandover):
        extra = {"uid": p.uid, "source_type": "uid.reassigned"}
    else:
        assert isinstance(p, SubmissionPublished | SubmissionAttested | EvaluationRequested)
        extra = {"hash": p.hash, "repo_namespace": p.repo_namespace, "repo_name": p.repo_name,
                 "source_type": p.source_type if isinstance(p, EvaluationRequested) else p.type}
        if isinstance(p, EvaluationRequested):
            extra["uid"] = p.uid
    # Rejections name the miner's (or the operator's) event, not an internal one.
    internal = isinstance(p, EvaluationRequested | UidHandover)
    source_id = p.source_event_id if internal else source.event_id
    event = SubmissionRejected(
        code=rejection.code, message=rejection.message, source_event_id=source_id,
        hotkey=p.hotkey, block=p.block, **extra,
    )
    await emit(topic, event, key=p.hotkey, source=source, stage=stage, signer=signer)
    metrics.rejected.labels(rejection.code.value).inc()
