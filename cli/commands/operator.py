"""`speechstream operator keygen | reassign-uid`: the operator's signed actions."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from cli.exceptions import UsageError
from producers.miner import publish
from producers.operator import uid_reassignment
from producers.settings import OperatorSettings
from speechstream.exceptions import KeyFileError, SpeechstreamError
from speechstream.keys import create_key_file, load_key_file
from speechstream.settings import KafkaSettings

KEYGEN = "speechstream operator keygen"
HOTKEY = re.compile(r"^[0-9a-f]{64}$")

REASSIGN_HELP = """\
Hand a uid to another hotkey (what the chain does when it deregisters a miner): publish a
uid.reassigned event, signed with the operator's key, to the registrations topic. The intake
worker accepts it only when the key is the one it is configured with
(SPEECHSTREAM_STREAMS_OPERATOR_KEY); the hotkey that held the uid then loses it, and its later
submissions are rejected with UID_REASSIGNED. A hotkey that already holds another uid is
refused (HOTKEY_HAS_OTHER_UID) and the uid stays where it was. Rejections, with their reason,
are on the submissions.rejected topic (and in the rejections table)."""

KEY_FILE_HELP = """\
the operator's key file, mode 0600 (default: $SPEECHSTREAM_OPERATOR_KEY_FILE, else
$SPEECHSTREAM_API_OPERATOR_KEY_FILE, else ~/.speechstream/operator.json)"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``operator`` command group."""
    operator = subparsers.add_parser("operator", help="the operator's signed actions (uid "
                                     "handover) and key")
    sub = operator.add_subparsers(dest="operator_command", required=True,
                                  metavar="{keygen,reassign-uid}")

    keygen = sub.add_parser(
        "keygen", help="create the operator's ed25519 key file (mode 0600)",
        description="Create the operator's key file (mode 0600) and print its public key: "
        "give it to the intake worker as SPEECHSTREAM_STREAMS_OPERATOR_KEY.",
    )
    keygen.add_argument("--key-file", type=Path, default=None, help=KEY_FILE_HELP)
    keygen.add_argument("--force", action="store_true", help="replace an existing key file")
    keygen.set_defaults(func=_keygen)

    reassign = sub.add_parser(
        "reassign-uid", help="hand a uid to another hotkey (signed with the operator's key)",
        description=REASSIGN_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    reassign.add_argument("--uid", type=int, required=True, help="the uid to hand over (≥ 0)")
    reassign.add_argument("--hotkey", required=True,
                          help="the hotkey that gets it (64 lowercase hex characters)")
    reassign.add_argument("--block", type=int, default=None,
                          help="chain height of the handover (default: the head on "
                          "chain.blocks)")
    reassign.add_argument("--key-file", type=Path, default=None, help=KEY_FILE_HELP)
    reassign.set_defaults(func=_reassign_uid)


def _key_file(args: argparse.Namespace) -> Path:
    path = args.key_file if args.key_file is not None else OperatorSettings().key_file
    return path.expanduser()


def _keygen(args: argparse.Namespace) -> int:
    path = _key_file(args)
    try:
        key = create_key_file(path, force=args.force)
    except KeyFileError as exc:
        raise UsageError(str(exc)) from exc
    print(f"operator_key={key.hotkey}")
    print(f"key_file={path}")
    return 0


def _reassign_uid(args: argparse.Namespace) -> int:
    if args.uid < 0:
        raise UsageError(f"--uid must be ≥ 0, got {args.uid}")
    if not HOTKEY.match(args.hotkey):
        raise UsageError("--hotkey must be 64 lowercase hex characters (an ed25519 public "
                         f"key), got {args.hotkey!r}")
    if args.block is not None and args.block < 0:
        raise UsageError(f"--block must be ≥ 0, got {args.block}")
    try:
        operator = load_key_file(_key_file(args), keygen=KEYGEN)
    except KeyFileError as exc:
        raise UsageError(str(exc)) from exc
    kafka = KafkaSettings()
    block = args.block if args.block is not None else _head(kafka)
    envelope = uid_reassignment(operator, uid=args.uid, hotkey=args.hotkey, block=block)
    publish(kafka, kafka.topics.registrations, [envelope])
    print(f"reassigned uid={args.uid} hotkey={args.hotkey} block={block} "
          f"operator={operator.hotkey} event_id={envelope.event_id}")
    return 0


def _head(kafka: KafkaSettings) -> int:
    """The chain's head on ``chain.blocks`` as the intake worker reads it (a head that jumped
    too far ignored); an error when none was published."""
    from speechstream.chainhead import JumpLimit
    from streams.chain import ChainHead
    from streams.settings import StreamsSettings

    chain = ChainHead(kafka, limit=JumpLimit(StreamsSettings().chain_jump_blocks))
    try:
        chain.start()
        head = chain.head
    finally:
        chain.close()
    if head is None:
        raise SpeechstreamError(f"no head block on {kafka.topics.chain_blocks}; pass --block")
    return head
