"""Ed25519 hotkeys: key generation, canonical signing bytes, signing and verification."""

from __future__ import annotations

import json
from typing import Any

from nacl.exceptions import BadSignatureError, CryptoError
from nacl.signing import SigningKey, VerifyKey

from schemas.exceptions import SignatureError


def canonical_bytes(fields: dict[str, Any]) -> bytes:
    """The bytes a signature covers: the fields as compact JSON with sorted keys."""
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8")


def generate_key() -> tuple[str, str]:
    """Return a new ``(private_key_hex, hotkey)``; the hotkey is the public key in hex."""
    key = SigningKey.generate()
    return key.encode().hex(), key.verify_key.encode().hex()


def hotkey_of(private_key_hex: str) -> str:
    """The hotkey (public key hex) of a private key."""
    return SigningKey(bytes.fromhex(private_key_hex)).verify_key.encode().hex()


def sign(private_key_hex: str, fields: dict[str, Any]) -> str:
    """Sign the canonical bytes of ``fields``; return the signature in hex."""
    key = SigningKey(bytes.fromhex(private_key_hex))
    return key.sign(canonical_bytes(fields)).signature.hex()


def verify(hotkey: str, fields: dict[str, Any], signature: str) -> None:
    """Raise :class:`SignatureError` unless ``signature`` signs ``fields`` with ``hotkey``."""
    try:
        VerifyKey(bytes.fromhex(hotkey)).verify(canonical_bytes(fields), bytes.fromhex(signature))
    except (BadSignatureError, CryptoError, ValueError, TypeError) as exc:
        raise SignatureError(f"signature does not verify for hotkey {hotkey[:16]}…") from exc
