"""The local development stack: a real Kafka broker (KRaft) and PostgreSQL on 127.0.0.1."""

from speechstream.dev.kafka import KAFKA_VERSION
from speechstream.dev.stack import DevStack, StackStatus, UpResult

__all__ = ["KAFKA_VERSION", "DevStack", "StackStatus", "UpResult"]
