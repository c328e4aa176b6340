"""Ed25519 hotkeys: key generation, canonical signing bytes, signing and verification."""

from __future__ import annotations

import json
from typing import Any

from nacl.exceptions import BadSignatureError, CryptoError
from nacl.signing import SigningKey, VerifyKey


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
    return sign_bytes(private_key_hex, canonical_bytes(fields))


def signature_is_valid(hotkey: str, fields: dict[str, Any], signature: str) -> bool:
    """Whether ``signature`` signs the canonical bytes of ``fields`` with ``hotkey``.

    Malformed keys and signatures (bad hex, wrong length) are simply not valid.
    """
    return signature_bytes_valid(hotkey, canonical_bytes(fields), signature)


def sign_bytes(private_key_hex: str, data: bytes) -> str:
    """Sign ``data``; return the signature in hex."""
    return SigningKey(bytes.fromhex(private_key_hex)).sign(data).signature.hex()


def signature_bytes_valid(hotkey: str, data: bytes, signature: str) -> bool:
    """Whether ``signature`` signs ``data`` with ``hotkey`` (malformed input is not valid)."""
    try:
        VerifyKey(bytes.fromhex(hotkey)).verify(data, bytes.fromhex(signature))
    except (BadSignatureError, CryptoError, ValueError, TypeError):
        return False
    return True
