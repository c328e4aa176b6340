"""speechstream: an event-driven evaluation pipeline for text-to-speech models on Apache Kafka."""

__version__ = "0.1.0"
