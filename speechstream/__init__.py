"""speechstream: an event-driven evaluation pipeline for text-to-speech models on Apache Kafka.

This package is the floor every stage stands on: settings (``settings``), the exception root
(``exceptions``), the Kafka plumbing (``kafka``), the metrics and health server
(``monitoring``) and the service runner (``service``). It imports only ``schemas``.
"""

__version__ = "0.1.0"
