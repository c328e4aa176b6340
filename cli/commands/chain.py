"""`speechstream chain tick --block N`: publish the chain's head block (what a chain adapter
does in production)."""

from __future__ import annotations

import argparse

from cli.exceptions import UsageError
from schemas.envelope import derived_event_id, new_envelope
from schemas.events import ChainBlock
from speechstream.kafka.producer import EventProducer
from speechstream.settings import KafkaSettings


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
        "($SPEECHSTREAM_STREAMS_CHAIN_JUMP_BLOCKS).",
    )
    tick.add_argument("--block", type=int, required=True, help="the head block (≥ 0)")
    tick.set_defaults(func=_tick)


def _tick(args: argparse.Namespace) -> int:
    if args.block < 0:
        raise UsageError(f"--block must be ≥ 0, got {args.block}")
    kafka = KafkaSettings()
    head = new_envelope(ChainBlock(block=args.block), key=None, producer="speechstream-chain",
                        event_id=derived_event_id(str(args.block), "chain"))
    with EventProducer(kafka) as producer:
        producer.send(kafka.topics.chain_blocks, head)
        producer.flush()
    print(f"head block {args.block} published to {kafka.topics.chain_blocks}")
    return 0
