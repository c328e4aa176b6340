"""The submission hash of SPEC §3, the single definition used everywhere."""

from __future__ import annotations

import hashlib


def submission_hash(namespace: str, name: str, config_template: str, hotkey: str) -> str:
    """Return the submission hash as a decimal string.

    ``int(sha256(" ".join([namespace, name, config_template, hotkey])).hexdigest()[:16], 16)``.
    """
    digest = hashlib.sha256(
        " ".join([namespace, name, config_template, hotkey]).encode("utf-8")
    ).hexdigest()
    return str(int(digest[:16], 16))
