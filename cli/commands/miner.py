"""`speechstream miner keygen | register | submit`: the miner's command line."""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.exceptions import CommandError, UsageError
from producers.miner import publish, registration, submission
from speechstream.exceptions import DeliveryError, KeyFileError
from speechstream.keys import create_key_file, load_key_file
from speechstream.settings import KafkaSettings

DEFAULT_KEY_FILE = Path("~/.speechstream/hotkey.json")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``miner`` command group."""
    miner = subparsers.add_parser("miner", help="hotkeys, registration and submissions")
    sub = miner.add_subparsers(dest="miner_command", required=True)

    keygen = sub.add_parser("keygen", help="create an ed25519 hotkey key file (mode 0600)")
    _key_file_arg(keygen)
    keygen.add_argument("--force", action="store_true", help="replace an existing key file")
    keygen.set_defaults(func=_keygen)

    reg = sub.add_parser("register", help="publish a signed registration of a uid")
    _key_file_arg(reg)
    reg.add_argument("--uid", type=int, required=True, help="the uid to claim (≥ 0)")
    reg.add_argument("--block", type=int, required=True, help="chain height of the registration")
    reg.add_argument("--coldkey", default=None, help="optional coldkey")
    reg.set_defaults(func=_register)

    sub_ = sub.add_parser("submit", help="publish a signed submission of a model repo")
    _key_file_arg(sub_)
    sub_.add_argument("--repo", required=True, help="model repo as namespace/name")
    sub_.add_argument("--block", type=int, required=True, help="chain height of the commitment")
    sub_.add_argument("--revision", default=None, help="commit of the repo to evaluate")
    sub_.add_argument("--config-template", default="default", help="prompt template name")
    sub_.add_argument("--competition-id", default="d1")
    sub_.add_argument(
        "--hash", dest="hash_override", default=None,
        help="publish this hash instead of the computed one (to test rejection)",
    )
    sub_.set_defaults(func=_submit)


def _key_file_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--key-file", type=Path, default=DEFAULT_KEY_FILE,
        help=f"hotkey key file (default {DEFAULT_KEY_FILE})",
    )


def _keygen(args: argparse.Namespace) -> int:
    try:
        key = create_key_file(args.key_file.expanduser(), force=args.force)
    except KeyFileError as exc:
        raise UsageError(str(exc)) from exc
    print(f"hotkey={key.hotkey}")
    print(f"key_file={args.key_file.expanduser()}")
    return 0


def _register(args: argparse.Namespace) -> int:
    settings = KafkaSettings()
    try:
        key = load_key_file(args.key_file.expanduser())
        envelope = registration(key, uid=args.uid, block=args.block, coldkey=args.coldkey)
        publish(settings, settings.topics.registrations, [envelope])
    except (KeyFileError, DeliveryError, ValueError) as exc:
        raise CommandError(str(exc)) from exc
    print(f"registered uid={args.uid} hotkey={key.hotkey} event_id={envelope.event_id}")
    return 0


def _submit(args: argparse.Namespace) -> int:
    settings = KafkaSettings()
    namespace, sep, name = args.repo.partition("/")
    if not sep or not namespace or not name:
        raise UsageError(f"--repo must be namespace/name, got {args.repo!r}")
    try:
        key = load_key_file(args.key_file.expanduser())
        envelope = submission(
            key,
            repo_namespace=namespace,
            repo_name=name,
            block=args.block,
            revision=args.revision,
            config_template=args.config_template,
            competition_id=args.competition_id,
            hash_override=args.hash_override,
        )
        publish(settings, settings.topics.submissions, [envelope])
    except (KeyFileError, DeliveryError, ValueError) as exc:
        raise CommandError(str(exc)) from exc
    print(f"submitted repo={args.repo} hash={envelope.payload.hash} event_id={envelope.event_id}")
    return 0
