"""The ``speechstream`` command line: ``speechstream --help`` lists every command."""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType

from cli.exceptions import EXIT_ERROR, CommandError
from speechstream import __version__
from speechstream.exceptions import SpeechstreamError

# Each module has ``register(subparsers)``, which adds its parser(s) and sets ``func`` (a
# function of the parsed arguments returning the exit status). A command that fails raises
# (``cli.exceptions.CommandError``, ``UsageError`` or any ``SpeechstreamError``); ``main``
# prints it and sets the exit status. Add new command modules here.
COMMAND_MODULES: tuple[str, ...] = (
    "cli.commands.dev",
    "cli.commands.topics",
    "cli.commands.acl",
    "cli.commands.credentials",
    "cli.commands.schemas",
    "cli.commands.miner",
    "cli.commands.operator",
    "cli.commands.trust",
    "cli.commands.streams",
    "cli.commands.evaluator",
    "cli.commands.rescore",
    "cli.commands.scoring",
    "cli.commands.sink",
    "cli.commands.chain",
    "cli.commands.validator",
    "cli.commands.audit",
    "cli.commands.api",
    "cli.commands.leaderboard",
    "cli.commands.maintenance",
    "cli.commands.demo",
)


def _load(name: str) -> ModuleType:
    return importlib.import_module(name)


def build_parser() -> argparse.ArgumentParser:
    """The parser with every command module's subcommands."""
    parser = argparse.ArgumentParser(
        prog="speechstream",
        description="An event-driven evaluation pipeline for text-to-speech models on Apache "
        "Kafka. Every command reads KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL (defaults: the "
        "local stack of `speechstream dev up`).",
    )
    parser.add_argument("--version", action="version", version=f"speechstream {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        _load(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; return its exit status. Every command's error is printed here, as
    ``error: <message>`` on stderr, with the exit status its class carries (a
    ``CommandError``'s own, 1 for any other ``SpeechstreamError``)."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except SpeechstreamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_status if isinstance(exc, CommandError) else EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
