"""`speechstream trust keygen | init | add | remove | show`: the operator's set of trusted keys
on the ``trust`` topic, each version signed with the operator's root key (docs/security.md)."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from cli.commands.operator import operator_key, operator_key_path
from cli.exceptions import UsageError
from producers import trust as trusted
from schemas.events import TRUST_ROLES, KeysTrusted
from schemas.trust import TrustSet
from speechstream.exceptions import KeyFileError, TrustError
from speechstream.keys import Hotkey, create_key_file, load_key_file
from speechstream.settings import KafkaSettings, TrustSettings

HEX_KEY = re.compile(r"^[0-9a-f]{64}$")

DESCRIPTION = """\
The operator's trusted keys: which key speaks for which role (intake, evaluator, auditor,
sink, validator, api, chain) under which name (an evaluator's, auditor's or validator's id;
intake, sink, api and chain for the others). Every service reads the highest version of the
set on the trust topic signed by the root key it is configured with
(SPEECHSTREAM_TRUST_OPERATOR_KEY) and refuses events signed by any other key, or by a key
speaking outside its role. `add` and `remove` publish the next version signed with the
operator's key file ($SPEECHSTREAM_OPERATOR_KEY_FILE, else $SPEECHSTREAM_API_OPERATOR_KEY_FILE,
else ~/.speechstream/operator.json).

Rotate a key: `trust keygen --out NEW`, `trust add` it under the same role and name, restart
the service with NEW, then `trust remove --key OLD`."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``trust`` command group."""
    trust = subparsers.add_parser(
        "trust", help="the operator's trusted keys: keygen, init, add, remove, show",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = trust.add_subparsers(dest="trust_command", required=True,
                               metavar="{keygen,init,add,remove,show}")

    keygen = sub.add_parser(
        "keygen", help="create a service's key file (mode 0600) and print its public key",
        description="Create an ed25519 key file (mode 0600) for a service and print "
        "`key=<public key>`: give the file to the service as its SPEECHSTREAM_<SERVICE>_KEY_FILE "
        "and the key to `speechstream trust add`.",
    )
    keygen.add_argument("--out", type=Path, required=True, help="the key file to create")
    keygen.add_argument("--force", action="store_true", help="replace an existing file")
    keygen.set_defaults(func=_keygen)

    init = sub.add_parser(
        "init", help="create the operator's root key file if missing; print the root key",
        description="Create the operator's key file (mode 0600) unless it exists, and print "
        "`SPEECHSTREAM_TRUST_OPERATOR_KEY=<public key>`, the root of trust every service is "
        "configured with (`export $(speechstream trust init)`: only that line goes to stdout).",
    )
    _operator_option(init)
    init.set_defaults(func=_init)

    add = sub.add_parser(
        "add", help="trust a key for a role under a name (publishes the next version)",
        description="Publish the next version of the trusted set with KEY trusted for ROLE "
        "as NAME (a key already trusted gets the new role and name; a name may hold several "
        "keys, which is how a key is rotated).",
    )
    add.add_argument("--role", required=True, help=f"one of {', '.join(TRUST_ROLES)}")
    add.add_argument("--name", required=True,
                     help="the name it speaks under: the evaluator's, auditor's or validator's "
                     "id; intake, sink, api or chain for those roles")
    which = add.add_mutually_exclusive_group(required=True)
    which.add_argument("--key", help="the public key (64 lowercase hex characters)")
    which.add_argument("--key-file", type=Path, help="a key file whose public key to trust")
    add.add_argument("--reason", help="recorded with the new version")
    _operator_option(add)
    add.set_defaults(func=_add)

    remove = sub.add_parser(
        "remove", help="stop trusting a key, or every key of a name (publishes the next "
        "version)",
        description="Publish the next version of the trusted set without KEY (or without "
        "every key of NAME). Readers refuse what it signs from then on, and a sink rebuild "
        "leaves out what it signed before (`speechstream sink rebuild`).",
    )
    gone = remove.add_mutually_exclusive_group(required=True)
    gone.add_argument("--key", help="the public key to remove")
    gone.add_argument("--name", help="remove every key trusted under this name")
    remove.add_argument("--reason", help="recorded with the new version")
    _operator_option(remove)
    remove.set_defaults(func=_remove)

    show = sub.add_parser(
        "show", help="the current trusted set: its version and each key's role and name",
        description="Read the trust topic and print the highest version signed by the root "
        "key ($SPEECHSTREAM_TRUST_OPERATOR_KEY, else the operator's key file's) and each key "
        "in it with its role and name.",
    )
    show.add_argument("--json", action="store_true", help="print one JSON object")
    _operator_option(show)
    show.set_defaults(func=_show)


def _operator_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--operator-key-file", type=Path, default=None,
                        help="the operator's key file (default: $SPEECHSTREAM_OPERATOR_KEY_FILE, "
                        "else $SPEECHSTREAM_API_OPERATOR_KEY_FILE, else "
                        "~/.speechstream/operator.json)")


def _keygen(args: argparse.Namespace) -> int:
    path = args.out.expanduser()
    try:
        key = create_key_file(path, force=args.force)
    except KeyFileError as exc:
        raise UsageError(str(exc)) from exc
    print(f"key={key.hotkey}")
    print(f"key_file={path}", file=sys.stderr)
    return 0


def _init(args: argparse.Namespace) -> int:
    path = operator_key_path(args.operator_key_file)
    if path.exists():
        key = operator_key(args.operator_key_file)
        print(f"operator key file {path} exists; its key is the root", file=sys.stderr)
    else:
        key = create_key_file(path)
        print(f"created the operator key file {path} (mode 0600)", file=sys.stderr)
    print(f"SPEECHSTREAM_TRUST_OPERATOR_KEY={key.hotkey}")
    return 0


def _signing_operator(args: argparse.Namespace) -> Hotkey:
    """The operator's key, which must be the configured root (when one is)."""
    path = operator_key_path(args.operator_key_file)
    if not path.exists():
        raise UsageError(f"no operator key file at {path}: run `speechstream trust init` (or "
                         "set SPEECHSTREAM_OPERATOR_KEY_FILE)")
    key = operator_key(args.operator_key_file)
    root = TrustSettings().operator_key
    if root is not None and root != key.hotkey:
        raise UsageError(f"{path} holds key {key.hotkey}, not the root of trust "
                         f"SPEECHSTREAM_TRUST_OPERATOR_KEY={root}: services would ignore "
                         "what it signs")
    return key


def _key_to_add(args: argparse.Namespace) -> str:
    if args.key_file is not None:
        try:
            return load_key_file(args.key_file.expanduser(),
                                 keygen=f"speechstream trust keygen --out {args.key_file}").hotkey
        except KeyFileError as exc:
            raise UsageError(str(exc)) from exc
    if not HEX_KEY.match(args.key):
        raise UsageError(f"--key must be 64 lowercase hex characters (an ed25519 public key), "
                         f"got {args.key!r}")
    return str(args.key)


def _add(args: argparse.Namespace) -> int:
    if args.role not in TRUST_ROLES:
        raise UsageError(f"unknown role {args.role!r}: one of {', '.join(TRUST_ROLES)} (miners "
                         "sign with their hotkeys, the operator with the root key)")
    if not 1 <= len(args.name) <= 128 or "\x00" in args.name or args.name != args.name.strip():
        raise UsageError(f"--name must be 1–128 characters without surrounding spaces, got "
                         f"{args.name!r}")
    key = _key_to_add(args)
    operator = _signing_operator(args)
    kafka = KafkaSettings()
    event = trusted.add_key(kafka, operator, key=key, role=args.role, name=args.name,
                            reason=args.reason)
    print(f"trusted keys version {event.version}: added {args.role} {args.name!r} key {key} "
          f"({len(event.keys)} keys)")
    return 0


def _remove(args: argparse.Namespace) -> int:
    if args.key is not None and not HEX_KEY.match(args.key):
        raise UsageError(f"--key must be 64 lowercase hex characters (an ed25519 public key), "
                         f"got {args.key!r}")
    operator = _signing_operator(args)
    kafka = KafkaSettings()
    try:
        event = trusted.remove_keys(kafka, operator, key=args.key, name=args.name,
                                    reason=args.reason)
    except TrustError as exc:
        raise UsageError(str(exc)) from exc
    print(f"trusted keys version {event.version}: removed {args.key or args.name} "
          f"({len(event.keys)} keys left)")
    return 0


def _root(args: argparse.Namespace) -> str:
    root = TrustSettings().operator_key
    if root is not None:
        return root
    path = operator_key_path(args.operator_key_file)
    if not path.exists():
        raise UsageError("no root of trust: set SPEECHSTREAM_TRUST_OPERATOR_KEY, or run "
                         f"`speechstream trust init` (no operator key file at {path})")
    return operator_key(args.operator_key_file).hotkey


def _show(args: argparse.Namespace) -> int:
    root = _root(args)
    current = trusted.read_trusted(KafkaSettings(), root)
    print(format_set(current, root, as_json=args.json))
    return 0


def format_set(current: TrustSet | KeysTrusted, root: str, *, as_json: bool = False) -> str:
    """The trusted set as ``trust show`` prints it: a header line and one line a key (role,
    name, key), sorted by role and name; or one JSON object."""
    if isinstance(current, KeysTrusted):
        current = TrustSet.of(current)
    keys = sorted(current.keys.values(), key=lambda k: (k.role, k.name, k.key))
    if as_json:
        return json.dumps({"root": root, "version": current.version,
                           "keys": [{"key": k.key, "role": k.role, "name": k.name}
                                    for k in keys]})
    lines = [f"trusted keys version {current.version} (root {root}): {len(keys)} keys"]
    if keys:
        width = max(len(k.name) for k in keys)
        lines += [f"  {k.role:<9} {k.name:<{width}}  {k.key}" for k in keys]
    return "\n".join(lines)
