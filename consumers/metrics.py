"""Prometheus metrics of an evaluator, one bundle built from a registry argument."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Histogram

from speechstream.kafka.records import DEAD_LETTER_LABELS
from speechstream.metrics import MetricsBundle, metric

EVALUATION_BUCKETS = (0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600)


@dataclass(frozen=True)
class EvaluatorMetrics(MetricsBundle):
    """Evaluations by final status, their durations, what runs now, aborts, and liveness."""

    evaluations: Counter = metric(Counter, "speechstream_evaluations_total",
                                  "Evaluations finished, by final status", labels=("status",))
    evaluation_seconds: Histogram = metric(
        Histogram, "speechstream_evaluation_seconds", "Wall time of one evaluation",
        buckets=EVALUATION_BUCKETS,
    )
    in_progress: Gauge = metric(Gauge, "speechstream_evaluations_in_progress",
                                "Evaluations running now")
    dead_letters: Counter = metric(Counter, "speechstream_evaluator_dead_letters_total",
                                   "Requests sent to the dead-letter topic: undecodable, or their "
                                   "handling raised; by consumer and kind of reason",
                                   labels=DEAD_LETTER_LABELS)
    transactions_aborted: Counter = metric(
        Counter, "speechstream_evaluator_transactions_aborted_total",
        "Transactions aborted (their request is read again; a computed score is kept and "
        "committed, not evaluated again)",
    )
    producers_replaced: Counter = metric(
        Counter, "speechstream_evaluator_producers_replaced_total",
        "Transactional producers replaced because a call blocked past its timeout",
    )
    commits_retried: Counter = metric(
        Counter, "speechstream_evaluator_commits_retried_total",
        "Scores committed from a result kept after their first transaction failed (not "
        "evaluated again)",
    )
    already_scored: Counter = metric(
        Counter, "speechstream_evaluator_already_scored_total",
        "Requests acknowledged without evaluating: their (hash, version) has a committed score",
    )
    withdrawn: Counter = metric(
        Counter, "speechstream_evaluator_withdrawn_total",
        "Requests acknowledged without evaluating: withdrawn (displaced by an earlier duplicate)",
    )
    last_poll: Gauge = metric(Gauge, "speechstream_evaluator_last_poll_timestamp_seconds",
                              "When the evaluator last polled Kafka (health)")


@dataclass(frozen=True)
class ValidatorMetrics(MetricsBundle):
    """Epochs run, failed and their durations, the latest epoch, the chain head, skipped
    records and their dead letters."""

    epochs: Counter = metric(Counter, "speechstream_validator_epochs_total",
                             "Weights vectors computed and published")
    epoch_seconds: Histogram = metric(
        Histogram, "speechstream_validator_epoch_seconds",
        "Time to compute and publish one epoch's weights",
        buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5),
    )
    last_epoch: Gauge = metric(Gauge, "speechstream_validator_last_epoch",
                               "The latest epoch published")
    head_block: Gauge = metric(Gauge, "speechstream_validator_head_block",
                               "The chain's head block as last read")
    epoch_blocks: Gauge = metric(Gauge, "speechstream_validator_epoch_blocks",
                                 "Blocks per epoch (SPEECHSTREAM_VALIDATOR_EPOCH_BLOCKS)")
    blocks_since_weights: Gauge = metric(
        Gauge, "speechstream_validator_blocks_since_weights",
        "Blocks from the first block of the latest epoch this validator published weights for "
        "to the head (before its first vector: from the first head it read)")
    undecodable: Counter = metric(
        Counter, "speechstream_validator_undecodable_total",
        "Records skipped: they did not decode, do not belong on their topic, or the ledger "
        "could not take them")
    dead_letters: Counter = metric(Counter, "speechstream_validator_dead_letters_total",
                                   "Dead letters of skipped records published, by consumer and "
                                   "kind of reason", labels=DEAD_LETTER_LABELS)
    dead_letter_failures: Counter = metric(
        Counter, "speechstream_validator_dead_letter_failures_total",
        "Dead letters not delivered (given again at the next start)")
    failed_epochs: Counter = metric(
        Counter, "speechstream_validator_failed_epochs_total",
        "Epochs whose vector could not be computed or published (tried again at the next "
        "epoch), or whose minerboard entries were not delivered, by step",
        labels=("step",))


@dataclass(frozen=True)
class AuditMetrics(MetricsBundle):
    """Audits by verdict and audited evaluator, disagreements per evaluator, their durations,
    scores skipped or dead-lettered."""

    audits: Counter = metric(Counter, "speechstream_audits_total",
                             "Scores audited, by verdict and by the evaluator that scored them",
                             labels=("verdict", "evaluator"))
    disagreements: Counter = metric(
        Counter, "speechstream_audit_disagreements_total",
        "Audits whose re-score disagreed with the score, by the evaluator that scored it",
        labels=("evaluator",),
    )
    audit_seconds: Histogram = metric(
        Histogram, "speechstream_audit_seconds", "Wall time of one audit",
        buckets=EVALUATION_BUCKETS,
    )
    skipped: Counter = metric(Counter, "speechstream_audit_skipped_total",
                              "Scores read and not audited (outside the sample, or FAILED)")
    dead_letters: Counter = metric(
        Counter, "speechstream_audit_dead_letters_total",
        "Scores sent to the dead-letter topic: undecodable, or their audit raised; by consumer "
        "and kind of reason", labels=DEAD_LETTER_LABELS)
