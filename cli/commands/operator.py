"""`speechstream operator keygen | reassign-uid`: the operator's signed actions, and the
operator's root key as every operator command loads it (:func:`operator_signer`)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from cli.exceptions import UsageError
from producers.operator import REGISTRY_READER, uid_reassignment
from producers.settings import OperatorSettings
from speechstream.exceptions import KeyFileError, SpeechstreamError
from speechstream.kafka.producer import EventProducer
from speechstream.keys import Hotkey, create_key_file, load_key_file
from speechstream.ledger import Holding
from speechstream.settings import KafkaSettings, TrustSettings
from speechstream.signer import Signer

KEYGEN = "speechstream operator keygen"
HOTKEY = re.compile(r"^[0-9a-f]{64}$")

REASSIGN_HELP = """\
Hand a uid to another hotkey (what the chain does when it deregisters a miner): publish a
uid.reassigned event, signed with the operator's key (the payload, and the envelope as
every signed event), to the registrations topic. The intake
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
    return operator_key_path(args.key_file)


def operator_key_path(key_file: Path | None = None) -> Path:
    """``key_file``, else the operator's key file of ``OperatorSettings``."""
    path = key_file if key_file is not None else OperatorSettings().key_file
    return path.expanduser()


def operator_key(key_file: Path | None = None) -> Hotkey:
    """The operator's key (:func:`operator_key_path`); :class:`UsageError` when the file is
    missing, open to others or bad."""
    try:
        return load_key_file(operator_key_path(key_file), keygen="speechstream trust init")
    except KeyFileError as exc:
        raise UsageError(str(exc)) from exc


def operator_signer(key_file: Path | None = None, *,
                    trust: TrustSettings | None = None) -> Signer | None:
    """The operator's root key, to sign what an operator command writes. Where a root of
    trust is configured (``SPEECHSTREAM_TRUST_OPERATOR_KEY``) the key file is required and
    must hold that key (readers refuse anything else); without one, the key file when it
    exists, else None (an unchecked development log: the write goes unsigned)."""
    root = (trust or TrustSettings()).operator_key
    if root is None and not operator_key_path(key_file).exists():
        return None
    key = operator_key(key_file)
    if root is not None and key.hotkey != root:
        raise UsageError(
            f"{operator_key_path(key_file)} holds key {key.hotkey}, not the root of trust "
            f"SPEECHSTREAM_TRUST_OPERATOR_KEY={root}: readers would refuse what it signs")
    return Signer(key.private_key, key.hotkey)


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
    holder = _holder(kafka, args.uid)
    if holder is not None and holder.hotkey != args.hotkey and block <= holder.block:
        raise UsageError(
            f"uid {args.uid} is held by hotkey {holder.hotkey[:16]}… since block "
            f"{holder.block}: a handover at block {block} would predate it (the block decides "
            "whose submissions count); name a later --block")
    envelope = uid_reassignment(operator, uid=args.uid, hotkey=args.hotkey, block=block)
    with EventProducer(kafka, signer=Signer(operator.private_key, operator.hotkey)) as producer:
        producer.send(kafka.topics.registrations, envelope)
        producer.flush()
    print(f"reassigned uid={args.uid} hotkey={args.hotkey} block={block} "
          f"operator={operator.hotkey} event_id={envelope.event_id}")
    return 0


def _holder(kafka: KafkaSettings, uid: int) -> Holding | None:
    """Who holds ``uid`` on the miner registry (``miners``, written by the intake worker
    alone), and since which block."""
    from schemas.events import MinerRegistered, UidHandover, UidRevoked
    from speechstream.kafka.reader import read_log
    from speechstream.ledger import Ledger

    ledger = Ledger()
    read_log(kafka, [kafka.topics.miners], ledger.apply, name=REGISTRY_READER,
             expected=(MinerRegistered, UidHandover, UidRevoked))
    return ledger.holders().get(uid)


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
