"""The shipped prompt set and speakers, the deterministic draw, and SPEC §4 text cleaning."""

from __future__ import annotations

import hashlib
import json
import random
import re
from functools import cache
from importlib import resources
from typing import Any, Protocol

from scoring.types import Sample

_DISALLOWED = re.compile(r"[^\w\s.,!?;:'()\"\[\]-]|_")


class PromptTokenizer(Protocol):
    """The part of a tokenizer the text cleaning needs."""

    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...

    def decode(self, token_ids: list[int], skip_special_tokens: bool = ...) -> str: ...


@cache
def _load(name: str) -> tuple[dict[str, Any], ...]:
    raw = resources.files("scoring").joinpath("data", name).read_text(encoding="utf-8")
    return tuple(json.loads(raw))


def prompt_set() -> tuple[dict[str, Any], ...]:
    """Every shipped prompt: ``{"user": preceding user message, "text": text to speak}``."""
    return _load("prompts.json")


def speakers() -> tuple[dict[str, Any], ...]:
    """Every shipped speaker: ``{"name": ..., "description": voice description}``."""
    return _load("speakers.json")


@cache
def prompt_set_hash() -> str:
    """sha256 over the shipped prompt set and speakers (their files' bytes, in that order)."""
    digest = hashlib.sha256()
    for name in ("prompts.json", "speakers.json"):
        digest.update(resources.files("scoring").joinpath("data", name).read_bytes())
    return digest.hexdigest()


def draw_seed(submission_hash: str, scoring_version: str) -> int:
    """The 64-bit seed of a submission's draw, from ``(hash, scoring_version)``."""
    digest = hashlib.sha256(f"{submission_hash}:{scoring_version}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def draw_samples(submission_hash: str, scoring_version: str, n: int) -> list[Sample]:
    """Draw ``n`` samples, the same ones every time for the same hash and scoring version.

    Prompts are drawn without replacement while the set lasts; each sample gets a speaker.
    """
    rng = random.Random(draw_seed(submission_hash, scoring_version))
    prompts = prompt_set()
    voices = speakers()
    position = {id(prompt): i for i, prompt in enumerate(prompts)}
    picked: list[dict[str, Any]] = []
    while len(picked) < n:
        picked.extend(rng.sample(prompts, min(n - len(picked), len(prompts))))
    samples = []
    for index, prompt in enumerate(picked):
        voice = rng.choice(voices)
        samples.append(
            Sample(
                index=index,
                prompt_id=position[id(prompt)],
                text=prompt["text"],
                user_message=prompt["user"],
                speaker=voice["name"],
                description=voice["description"],
            )
        )
    return samples


def clean_text(text: str, tokenizer: PromptTokenizer | None = None, max_tokens: int = 100) -> str:
    """SPEC §4 step 2: truncate to ``max_tokens`` prompt tokens, drop backslashes, keep only
    letters, digits, whitespace and ``.,!?;:'()"[]-``.

    Without a tokenizer, whitespace-separated words stand in for tokens.
    """
    if tokenizer is None:
        words = text.split()
        if len(words) > max_tokens:
            text = " ".join(words[:max_tokens])
    else:
        ids = tokenizer.encode(text, add_special_tokens=False)
        if len(ids) > max_tokens:
            text = tokenizer.decode(ids[:max_tokens], skip_special_tokens=True)
    text = text.replace("\\", "")
    return _DISALLOWED.sub("", text).strip()
