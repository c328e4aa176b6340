"""The local development stack: a real Kafka broker (KRaft) and PostgreSQL on 127.0.0.1, the
services run as child processes, and small randomly initialized TTS models (``devstack.tiny``)
for tests, the demo and the benchmarks.

Nothing is imported here: ``devstack.tiny.parler`` also runs in the Parler environment, which
has no Kafka or PostgreSQL client.
"""
