"""A service's own signing key: every envelope it produces is signed with it
(``schemas.trust``), so its readers can tell what it said from what anyone else wrote."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from schemas.envelope import Envelope
from schemas.trust import sign_envelope, signed_encoding
from speechstream.keys import load_key_file


@dataclass(frozen=True)
class Signer:
    """An ed25519 key (private, hex) and its public key (hex), which the operator's trusted
    set (``speechstream trust add``) names with a role and a name."""

    private_key: str
    public_key: str

    @classmethod
    def from_key_file(cls, path: Path) -> Signer:
        """The key in ``path`` (``speechstream trust keygen`` writes one, mode 0600)."""
        key = load_key_file(path.expanduser(), keygen=f"speechstream trust keygen --out {path}")
        return cls(key.private_key, key.hotkey)

    def sign(self, envelope: Envelope) -> Envelope:
        """``envelope`` signed with this key."""
        return sign_envelope(envelope, self.private_key, self.public_key)

    def encode(self, envelope: Envelope) -> bytes:
        """``envelope`` signed with this key, in its wire encoding (encoded once)."""
        return signed_encoding(envelope, self.private_key, self.public_key)
