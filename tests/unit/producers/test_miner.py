"""Key files and the miner's signed events."""

from __future__ import annotations

import os
import stat

import pytest

from producers.miner import registration, submission
from schemas.codec import decode, encode
from schemas.signing import signature_is_valid
from speechstream.exceptions import KeyFileError
from speechstream.keys import create_key_file, load_key_file


def test_key_file_is_private_and_round_trips(tmp_path) -> None:
    path = tmp_path / "hk.json"
    key = create_key_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key_file(path) == key
    with pytest.raises(KeyFileError, match="already exists"):
        create_key_file(path)


def test_key_file_open_to_others_is_refused(tmp_path) -> None:
    path = tmp_path / "hk.json"
    create_key_file(path)
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_key_file(path)


def test_missing_key_file_names_the_fix(tmp_path) -> None:
    with pytest.raises(KeyFileError, match="keygen"):
        load_key_file(tmp_path / "nope.json")


def test_signed_events_verify_and_carry_the_spec_hash(tmp_path) -> None:
    key = create_key_file(tmp_path / "hk.json")
    reg = decode(encode(registration(key, uid=7, block=100)))
    assert reg.key == "7"
    assert signature_is_valid(reg.payload.hotkey, reg.payload.signed_fields(),
                              reg.payload.signature)
    sub = decode(encode(submission(key, repo_namespace="ns", repo_name="m", block=200)))
    assert sub.key == key.hotkey
    assert sub.payload.hash == sub.payload.expected_hash()
    assert signature_is_valid(sub.payload.hotkey, sub.payload.signed_fields(),
                              sub.payload.signature)
    bad = submission(key, repo_namespace="ns", repo_name="m", block=200, hash_override="123")
    assert bad.payload.hash != bad.payload.expected_hash()


def test_republishing_the_same_event_keeps_its_id(tmp_path) -> None:
    key = create_key_file(tmp_path / "hk.json")
    first = submission(key, repo_namespace="ns", repo_name="m", block=200)
    again = submission(key, repo_namespace="ns", repo_name="m", block=200)
    later = submission(key, repo_namespace="ns", repo_name="m", block=201)
    assert first.event_id == again.event_id
    assert later.event_id != first.event_id
