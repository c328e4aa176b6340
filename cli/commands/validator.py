"""`speechstream validator run | weights`: weights from the score topic, every epoch."""

from __future__ import annotations

import argparse
import json
import logging

from prometheus_client import CollectorRegistry

from cli.exceptions import CommandError
from cli.serve import add_metrics_port, serve, with_metrics_port
from consumers.settings import ValidatorSettings
from schemas.events import WeightsComputed
from speechstream.settings import KafkaSettings
from speechstream.trust import checked_reads, service_trust

log = logging.getLogger("speechstream.validator")
SETTINGS = ("Settings: SPEECHSTREAM_VALIDATOR_VALIDATOR_ID (default: the host name), "
            "_EPOCH_BLOCKS (100), _SCORING_VERSION (v2), _GROUP_ID, _METRICS_PORT, _KEY_FILE "
            "(the key its vectors are signed with, trusted as validator <validator id>); "
            "SPEECHSTREAM_TRUST_OPERATOR_KEY (the root of trust: what an untrusted key wrote "
            "does not count, docs/security.md).")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``validator`` command group."""
    validator = subparsers.add_parser(
        "validator", help="compute weights every epoch (SPEC §5), show the latest vector",
        description="A validator reads the miner registry, the evaluation requests, statuses "
        "and scores, and the chain's head blocks, and publishes a weights vector to the "
        "weights topic at every epoch. See docs/validators.md.",
    )
    sub = validator.add_subparsers(dest="validator_command", required=True)
    run = sub.add_parser(
        "run", help="run the validator until SIGTERM",
        description="Rebuild the state from the log, then compute and publish the weights of "
        "each epoch the chain's head reaches (`speechstream chain tick` publishes a head). "
        + SETTINGS,
    )
    add_metrics_port(run)
    run.set_defaults(func=_run)
    weights = sub.add_parser(
        "weights", help="print the latest weights vector (from the weights topic)",
        description="Read this validator's latest vector from the weights topic and print "
        "it: uid, hotkey, repo, status, score, win rate, weight. " + SETTINGS,
    )
    weights.add_argument("--validator-id", default=None,
                         help="whose vector (default: this validator's id)")
    weights.add_argument("--json", action="store_true", help="print the event as JSON")
    weights.set_defaults(func=_weights)


def _run(args: argparse.Namespace) -> int:
    from consumers.metrics import ValidatorMetrics
    from consumers.validator import Validator

    settings = with_metrics_port(ValidatorSettings(), args)
    kafka = KafkaSettings()
    with service_trust(kafka, settings, role="validator", name=settings.validator_id,
                       logger=log) as trust:
        registry = CollectorRegistry()
        validator = Validator(kafka, settings, metrics=ValidatorMetrics.create(registry),
                              verify=trust.verify, signer=trust.signer)
        return serve(validator, registry, settings.metrics_port)


def render(vector: WeightsComputed) -> str:
    """The vector as a fixed-width table, one uid a line."""
    lines = [f"validator {vector.validator}, epoch {vector.epoch}, block {vector.block}",
             f"{'uid':>5}  {'hotkey':<12} {'repo':<24} {'status':<10} {'score':>8} "
             f"{'win rate':>8} {'weight':>8}"]
    lines.append("-" * len(lines[-1]))
    for e in vector.entries:
        score = "-" if e.score is None else f"{e.score:.6f}"
        rate = "-" if e.win_rate is None else f"{e.win_rate:.4f}"
        hotkey = (e.hotkey or "-")[:12]
        lines.append(f"{e.uid:>5}  {hotkey:<12} {(e.repo or '-'):<24} {(e.status or '-'):<10} "
                     f"{score:>8} {rate:>8} {e.weight:>8.6f}")
    lines.append(f"sum of weights: {sum(vector.weights):.6f}")
    return "\n".join(lines)


def _weights(args: argparse.Namespace) -> int:
    from consumers.validator import latest_vector

    settings = ValidatorSettings()
    validator_id = args.validator_id or settings.validator_id
    kafka = KafkaSettings()
    with checked_reads(kafka, "validator weights", log) as store:
        vector = latest_vector(kafka, validator_id, None if store is None else store.verify,
                               client_name=settings.client_name)
    if vector is None:
        raise CommandError(f"no weights from validator {validator_id!r} yet")
    print(json.dumps(vector.model_dump(mode="json"), indent=2) if args.json else render(vector))
    return 0
