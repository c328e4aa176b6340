"""Key files: an ed25519 private key and its public key (a miner's hotkey, or the operator's
key), stored as JSON with mode 0600."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from schemas.signing import generate_key, hotkey_of
from speechstream.exceptions import KeyFileError


@dataclass(frozen=True)
class Hotkey:
    """A miner's signing key (private, hex) and its hotkey (public key, hex)."""

    private_key: str
    hotkey: str


def create_key_file(path: Path, *, force: bool = False) -> Hotkey:
    """Generate a key and write it to ``path`` with mode 0600; refuse to overwrite unless forced."""
    if path.exists() and not force:
        raise KeyFileError(f"{path} already exists; pass --force to replace it")
    private, public = generate_key()
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps({"private_key": private, "hotkey": public}, indent=2).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.chmod(path, 0o600)
    return Hotkey(private, public)


def load_key_file(path: Path, *, keygen: str = "speechstream miner keygen") -> Hotkey:
    """Read a key file; raise :class:`KeyFileError` when it is missing (the message names
    ``keygen``, the command that creates one), open to others or bad."""
    try:
        mode = path.stat().st_mode
        doc = json.loads(path.read_text())
        private = doc["private_key"]
        public = hotkey_of(private)
    except FileNotFoundError as exc:
        raise KeyFileError(f"{path} not found; run `{keygen}`") from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise KeyFileError(f"{path} is not a valid key file: {exc}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"{path} is readable by others; run `chmod 600 {path}`")
    if doc.get("hotkey") not in (None, public):
        raise KeyFileError(f"{path}: stored hotkey does not match its private key")
    return Hotkey(private, public)
