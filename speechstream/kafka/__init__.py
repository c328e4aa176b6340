"""Kafka plumbing written once: topic admin, the typed producer, the record decoder, the
consume loop that decodes or dead-letters, and the transactional helper."""
