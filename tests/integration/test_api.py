"""The REST API over a real database filled by the real sink, called over HTTP the way the
original validator's client calls it; ensure_model's submissions go through the intake worker."""

from __future__ import annotations

import httpx
import pytest

from producers.miner import registration, submission
from schemas import EvaluationRequested, ScoreComputed, new_envelope
from schemas.events import SubmissionRejected
from schemas.fields import RejectionCode
from schemas.hashing import submission_hash
from speechstream.keys import create_key_file
from streams.rules import RATE_LIMIT_BLOCKS
from tests.conftest import pick_ports

pytestmark = pytest.mark.integration

ADMIN_KEY = "admin-s3cret"


def original_client_status(base: str, namespace: str, name: str, hash_: str, hotkey: str,
                           template: str = "default") -> tuple[str, float | None]:
    """What the original validator's ``_get_model_score`` makes of the answer."""
    params = {"repo_namespace": namespace, "repo_name": name, "hash": hash_,
              "chat_template_type": template, "hotkey": hotkey, "admin_key": "unused"}
    headers = {"Git-Commit": "0" * 7, "Bittensor-Version": "9.0", "UID": "7",
               "Hotkey": "5F-validator", "Coldkey": "5C-cold", "payload_signed": "sig",
               "payload": "p"}
    response = httpx.get(f"{base}/model_submission_details", params=params, headers=headers,
                         timeout=10)
    response.raise_for_status()
    result = response.json()
    if result is None or "status" not in result:
        return "FAILED", None
    if result["status"] in ("QUEUED", "RUNNING"):
        return result["status"], None  # skipped this epoch
    if result["status"] == "COMPLETED":
        return "COMPLETED", result["score"]["total_score"]
    return result["status"], 0.0 if result["status"] == "FAILED" else None


def test_the_original_clients_over_the_real_sink(pipeline, tmp_path) -> None:
    t = pipeline.kafka.topics
    alice, bob, operator = (create_key_file(tmp_path / f"{n}.json")
                            for n in ("alice", "bob", "operator"))
    scored = submission_hash("alice", "good", "default", alice.hotkey)
    requested = EvaluationRequested(hash=scored, hotkey=alice.hotkey, uid=0,
                                    repo_namespace="alice", repo_name="good", block=10,
                                    source_event_id="s0")
    pipeline.send(t.evaluation_requests, new_envelope(requested, key=scored, producer="t",
                                                      event_id="r0"))
    pipeline.send(t.scores, new_envelope(ScoreComputed(
        hash=scored, status="COMPLETED", total_score=0.625, evaluator="e",
        request_event_id="r0", content_hash="c" * 64), key=scored, producer="t"))
    dup = submission_hash("bob", "copy", "default", bob.hotkey)
    pipeline.send(t.rejected, new_envelope(SubmissionRejected(
        code=RejectionCode.DUPLICATE_REPO, message="duplicate of alice/good",
        source_event_id="s1", source_type="submission.published", hotkey=bob.hotkey, hash=dup,
        repo_namespace="bob", repo_name="copy", block=20), key=bob.hotkey, producer="t"))

    pipeline.start("streams", ["streams", "worker"],
                   SPEECHSTREAM_STREAMS_OPERATOR_KEY=operator.hotkey)
    pipeline.start("sink", ["sink", "run"])
    port, = pick_ports(1)
    pipeline.start("api", ["api", "run", "--port", str(port)],
                   SPEECHSTREAM_API_ADMIN_KEY=ADMIN_KEY,
                   SPEECHSTREAM_API_OPERATOR_KEY_FILE=str(tmp_path / "operator.json"))
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return httpx.get(f"{base}/hc", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    pipeline.wait(answers, "the API")
    pipeline.wait(lambda: pipeline.query("SELECT count(*) FROM scores")[0][0] == 1, "the score")
    pipeline.wait(lambda: pipeline.query("SELECT count(*) FROM rejections")[0][0] == 1,
                  "the rejection")

    assert original_client_status(base, "alice", "good", scored, alice.hotkey) == (
        "COMPLETED", 0.625)
    details = httpx.get(f"{base}/model_submission_details", params={
        "repo_namespace": "alice", "repo_name": "good", "hash": scored,
        "chat_template_type": "default", "hotkey": alice.hotkey}).json()
    assert details["details"]["safetensors_hash"] == "c" * 64
    # A rejected submission is FAILED to the original clients, its reason in the notes.
    assert original_client_status(base, "bob", "copy", dup, bob.hotkey) == ("FAILED", 0.0)
    notes = httpx.get(f"{base}/model_submission_details", params={
        "repo_namespace": "bob", "repo_name": "copy", "hash": dup, "hotkey": bob.hotkey}).json()
    assert notes["notes"] == "DUPLICATE_REPO: duplicate of alice/good"
    # Unknown: null, which the original client counts as FAILED.
    unknown = submission_hash("bob", "never", "default", bob.hotkey)
    assert httpx.get(f"{base}/model_submission_details", params={
        "repo_namespace": "bob", "repo_name": "never", "hash": unknown,
        "hotkey": bob.hotkey}).json() is None
    wrong = httpx.get(f"{base}/model_submission_details", params={
        "repo_namespace": "bob", "repo_name": "never", "hash": "42", "hotkey": bob.hotkey})
    assert wrong.status_code == 400
    with pytest.raises(httpx.HTTPStatusError):
        original_client_status(base, "bob", "never", "42", bob.hotkey)

    # ensure_model: bob (registered) submits through the API; the intake worker accepts the
    # operator's attestation; the request reaches PostgreSQL as QUEUED.
    pipeline.send(t.registrations, registration(bob, uid=1, block=5))
    pipeline.wait(lambda: pipeline.query("SELECT count(*) FROM miners")[0][0] == 1, "bob")
    fresh = submission_hash("bob", "own", "default", bob.hotkey)
    body = {"repo_namespace": "bob", "repo_name": "own", "hash": fresh,
            "chat_template_type": "default", "block": 900, "hotkey": bob.hotkey}
    refused = httpx.post(f"{base}/ensure_model", json=body, headers={"admin-key": "nope"})
    assert refused.status_code == 403
    queued = httpx.post(f"{base}/ensure_model", json=body, headers={"admin-key": ADMIN_KEY})
    assert queued.status_code == 200 and queued.json() == {"status": "QUEUED"}
    pipeline.wait(lambda: pipeline.query(
        "SELECT status FROM submissions WHERE hash = %s", (fresh,)) == [("QUEUED",)],
        "the attested submission, QUEUED")
    assert original_client_status(base, "bob", "own", fresh, bob.hotkey) == ("QUEUED", None)
    again = httpx.post(f"{base}/ensure_model", json=body, headers={"admin-key": ADMIN_KEY})
    assert again.json()["status"] == "QUEUED" and "score" in again.json()
    # A miner's own submission still goes through as before.
    pipeline.send(t.submissions, submission(bob, repo_namespace="bob", repo_name="x",
                                            block=900 + RATE_LIMIT_BLOCKS))
    pipeline.wait(lambda: pipeline.query("SELECT count(*) FROM submissions")[0][0] == 3,
                  "the miner's own submission")

    # minerboard_update → the minerboard, through the log and the sink.
    done = httpx.post(f"{base}/minerboard_update", headers={"admin-key": ADMIN_KEY},
                      json={"hash": scored, "uid": 0, "hotkey": alice.hotkey, "block": 10})
    assert done.status_code == 200 and done.content == b""
    pipeline.wait(lambda: httpx.get(f"{base}/minerboard").json() != [], "the minerboard")
    (entry,) = httpx.get(f"{base}/minerboard").json()
    assert (entry["uid"], entry["status"], entry["total_score"], entry["safetensors_hash"]) == (
        0, "COMPLETED", 0.625, "c" * 64)
    recent = httpx.get(f"{base}/recent_entries").json()
    assert {e["status"] for e in recent} == {"COMPLETED", "FAILED", "QUEUED"}
    assert httpx.get(f"{base}/weights").status_code == 404
    assert "speechstream_api_requests_total" in httpx.get(f"{base}/metrics").text
