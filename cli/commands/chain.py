"""`speechstream chain tick --block N`: publish the chain's head block (what a chain adapter
does in production), signed with the chain adapter's key."""

from __future__ import annotations

import argparse

from cli.exceptions import UsageError
from producers.settings import ChainSettings
from schemas.envelope import derived_event_id, new_envelope
from schemas.events import ChainBlock
from speechstream.exceptions import KeyFileError
from speechstream.kafka.producer import EventProducer
from speechstream.settings import KafkaSettings, TrustSettings
from speechstream.signer import Signer


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``chain`` command group."""
    chain = subparsers.add_parser("chain", help="publish the chain's head block")
    sub = chain.add_subparsers(dest="chain_command", required=True)
    tick = sub.add_parser(
        "tick", help="publish one head-block event to chain.blocks",
        description="Publish the chain's head block to the chain.blocks topic. Validators run "
        "an epoch whenever the head reaches a new one; a chain adapter publishes the same "
        "events in production. Publishing a block twice is the same event. The intake worker "
        "judges claimed blocks by the head (within $SPEECHSTREAM_STREAMS_BLOCK_WINDOW blocks "
        "behind it) and ignores a head that jumps too far past the previous one "
        "($SPEECHSTREAM_STREAMS_CHAIN_JUMP_BLOCKS). The head is signed with the chain "
        "adapter's key ($SPEECHSTREAM_CHAIN_KEY_FILE, which the operator's trusted set names "
        "as role chain, name chain: `speechstream trust add --role chain --name chain`); "
        "required when a root of trust is configured ($SPEECHSTREAM_TRUST_OPERATOR_KEY).",
    )
    tick.add_argument("--block", type=int, required=True, help="the head block (≥ 0)")
    tick.set_defaults(func=_tick)


def _tick(args: argparse.Namespace) -> int:
    if args.block < 0:
        raise UsageError(f"--block must be ≥ 0, got {args.block}")
    signer = chain_signer(ChainSettings(), TrustSettings())
    kafka = KafkaSettings()
    head = new_envelope(ChainBlock(block=args.block), key=None, producer="speechstream-chain",
                        event_id=derived_event_id(str(args.block), "chain"))
    with EventProducer(kafka, signer=signer) as producer:
        producer.send(kafka.topics.chain_blocks, head)
        producer.flush()
    signed = f", signed by {signer.public_key}" if signer is not None else ", unsigned"
    print(f"head block {args.block} published to {kafka.topics.chain_blocks}{signed}")
    return 0


def chain_signer(settings: ChainSettings, trust: TrustSettings) -> Signer | None:
    """The chain adapter's key from ``settings.key_file``; None without one on a log with no
    root of trust; :class:`UsageError` without one where a root is configured (every reader
    refuses an unsigned head) or when the key file is missing or bad."""
    if settings.key_file is None:
        if trust.operator_key is not None:
            raise UsageError("the chain adapter signs its heads: set SPEECHSTREAM_CHAIN_KEY_FILE "
                             "to its key file (`speechstream trust keygen`, then `speechstream "
                             "trust add --role chain --name chain`)")
        return None
    try:
        return Signer.from_key_file(settings.key_file)
    except KeyFileError as exc:
        raise UsageError(str(exc)) from exc
