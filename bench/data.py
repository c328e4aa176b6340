"""Synthetic miners and submissions for the benchmarks (all valid, none rate-limited)."""

from __future__ import annotations

from collections.abc import Iterator

from nacl.signing import SigningKey

from producers.miner import registration, submission
from schemas.codec import encode
from speechstream.keys import Hotkey
from streams.rules import RATE_LIMIT_BLOCKS

SPACING = RATE_LIMIT_BLOCKS  # one rate-limit window between a miner's submissions


def miners(n: int, *, seed: int = 0) -> list[Hotkey]:
    """``n`` deterministic hotkeys."""
    keys = []
    for i in range(n):
        sk = SigningKey((seed * 1_000_003 + i).to_bytes(8, "big") * 4)
        keys.append(Hotkey(sk.encode().hex(), sk.verify_key.encode().hex()))
    return keys


def registrations(keys: list[Hotkey], *, uid_base: int = 0) -> Iterator[tuple[str, bytes]]:
    """``(key, value)`` of one registration per miner."""
    for uid, key in enumerate(keys, start=uid_base):
        env = registration(key, uid=uid, block=1)
        yield env.key or "", encode(env)


def submissions(
    keys: list[Hotkey], per_miner: int, *, tag: str = "b"
) -> Iterator[tuple[str, bytes, str]]:
    """``(key, value, hash)``: ``per_miner`` valid submissions per miner, round-robin."""
    for round_ in range(per_miner):
        for uid, key in enumerate(keys):
            env = submission(
                key,
                repo_namespace=f"m{uid}",
                repo_name=f"{tag}-tts-{round_}",
                block=10 + round_ * SPACING,
            )
            yield env.key or "", encode(env), env.payload.hash
