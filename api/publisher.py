"""The API's write side: what it publishes into the pipeline (it never writes PostgreSQL)."""

from __future__ import annotations

from typing import Protocol

from api.exceptions import NoOperatorKeyError
from api.models import EnsureModelRequest, MinerboardRequest
from schemas.envelope import derived_event_id, new_envelope
from schemas.events import MinerboardUpdated, SubmissionAttested
from schemas.signed import signed_envelope, submission_fields
from speechstream.kafka.producer import EventProducer
from speechstream.keys import Hotkey
from speechstream.settings import KafkaSettings
from speechstream.signer import Signer

PRODUCER_NAME = "speechstream-api"


class Publisher(Protocol):
    """Publishes what the admin routes ask for (Kafka in production, a list in tests)."""

    def start(self) -> None: ...

    def close(self) -> None: ...

    def submit(self, request: EnsureModelRequest) -> None: ...

    def minerboard(self, request: MinerboardRequest) -> None: ...


class KafkaPublisher:
    """Submissions attested with the operator's key to the submissions topic (the intake
    worker validates them like a miner's), minerboard updates to the minerboard topic; each
    call waits for the broker."""

    def __init__(self, kafka: KafkaSettings, operator: Hotkey | None, *,
                 producer: EventProducer | None = None,
                 signer: Signer | None = None) -> None:
        self._kafka = kafka
        self._operator = operator
        self._producer = producer or EventProducer(kafka, signer=signer)

    def start(self) -> None:
        self._producer.start()

    def close(self) -> None:
        self._producer.close()

    def submit(self, request: EnsureModelRequest) -> None:
        if self._operator is None:
            raise NoOperatorKeyError(
                "this API has no operator key (SPEECHSTREAM_API_OPERATOR_KEY_FILE), so it "
                "cannot submit models"
            )
        fields = {
            **submission_fields(
                "submission.attested", repo_namespace=request.repo_namespace,
                repo_name=request.repo_name, hotkey=request.hotkey, block=request.block,
                revision=request.revision, config_template=request.chat_template_type,
            ),
            "operator": self._operator.hotkey,
        }
        envelope = signed_envelope(SubmissionAttested, fields, self._operator.private_key,
                                   key=request.hotkey, producer=PRODUCER_NAME,
                                   signer="operator")
        self._producer.send(self._kafka.topics.submissions, envelope)
        self._producer.flush()

    def minerboard(self, request: MinerboardRequest) -> None:
        update = MinerboardUpdated(hash=request.hash, uid=request.uid, hotkey=request.hotkey,
                                   block=request.block)
        source = f"{request.uid}:{request.hash}:{request.block}:{request.hotkey}"
        self._producer.send(self._kafka.topics.minerboard, new_envelope(
            update, key=str(request.uid), producer=PRODUCER_NAME,
            event_id=derived_event_id(source, "minerboard"),
        ))
        self._producer.flush()
