"""The REST API's shapes and errors through FastAPI's test client, over in-memory doubles of
the store and the publisher (the integration test runs it over the real sink's database)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from api.app import create_app
from api.exceptions import StoreUnavailableError
from api.models import (
    Details,
    EnsureModelRequest,
    MinerboardEntry,
    MinerboardRequest,
    RecentEntry,
    Score,
    SubmissionDetails,
    Weights,
)
from api.publisher import KafkaPublisher
from api.settings import ApiSettings
from schemas.hashing import submission_hash
from speechstream.keys import create_key_file
from speechstream.settings import KafkaSettings

HK = "ab" * 32
H = submission_hash("alice", "tts-1", "default", HK)
T = datetime(2026, 1, 1, tzinfo=UTC)
ADMIN = {"admin-key": "s3cret"}


@dataclass
class FakeStore:
    entries: dict[str, SubmissionDetails] = field(default_factory=dict)
    board: list[MinerboardEntry] = field(default_factory=list)
    recent: list[RecentEntry] = field(default_factory=list)
    vector: Weights | None = None
    down: bool = False
    opened: bool = False

    def start(self) -> None:
        self.opened = True

    def close(self) -> None:
        self.opened = False

    def entry(self, hash_: str) -> SubmissionDetails | None:
        if self.down:
            raise StoreUnavailableError("PostgreSQL did not answer: connection refused")
        return self.entries.get(hash_)

    def minerboard(self) -> list[MinerboardEntry]:
        return self.board

    def recent_entries(self, limit: int) -> list[RecentEntry]:
        return self.recent[:limit]

    def latest_weights(self, validator: str | None) -> Weights | None:
        return self.vector


@dataclass
class FakePublisher:
    submitted: list[EnsureModelRequest] = field(default_factory=list)
    boards: list[MinerboardRequest] = field(default_factory=list)

    def start(self) -> None: ...

    def close(self) -> None: ...

    def submit(self, request: EnsureModelRequest) -> None:
        self.submitted.append(request)

    def minerboard(self, request: MinerboardRequest) -> None:
        self.boards.append(request)


@pytest.fixture
def parts() -> tuple[FakeStore, FakePublisher]:
    return FakeStore(), FakePublisher()


@pytest.fixture
def client(parts) -> TestClient:
    store, publisher = parts
    settings = ApiSettings(admin_key=SecretStr("s3cret"), recent_entries=2)
    with TestClient(create_app(settings, store, publisher, CollectorRegistry())) as c:
        yield c


def _details(**extra: object) -> dict:
    return {"repo_namespace": "alice", "repo_name": "tts-1", "hash": H,
            "chat_template_type": "default", "hotkey": HK, **extra}


def _known(store: FakeStore, status: str = "COMPLETED", score: float | None = 0.5,
           notes: str | None = None) -> None:
    store.entries[H] = SubmissionDetails(hash=H, status=status, score=Score(total_score=score),
                                         details=Details(safetensors_hash="w" * 64), notes=notes)


DETAILS = {"safetensors_hash": "w" * 64, "manifest": None, "audit": None}


def test_details_of_a_known_submission(client, parts) -> None:
    _known(parts[0])
    response = client.get("/model_submission_details", params=_details(admin_key="x"),
                          headers={"Git-Commit": "abc", "UID": "3", "payload_signed": "z"})
    assert response.status_code == 200
    assert response.json() == {"score": {"total_score": 0.5},
                               "details": DETAILS, "hash": H,
                               "status": "COMPLETED", "notes": None}


def test_unknown_is_null_and_a_leading_zero_is_no_mismatch(client, parts) -> None:
    assert client.get("/model_submission_details", params=_details()).json() is None
    # A hotkey whose hash has fewer than 20 digits, so that a zero-padded one has 20.
    hotkey = next(k for k in (f"{i:064x}" for i in range(100))
                  if len(submission_hash("alice", "tts-1", "default", k)) < 20)
    short = submission_hash("alice", "tts-1", "default", hotkey)
    parts[0].entries[short] = SubmissionDetails(
        hash=short, status="FAILED", score=Score(), details=Details(),
        notes="DUPLICATE_REPO: duplicate of …")
    found = client.get("/model_submission_details",
                       params=_details(hash=short.zfill(20), hotkey=hotkey)).json()
    assert (found["hash"], found["status"]) == (short, "FAILED")
    assert found["notes"].startswith("DUPLICATE_REPO")


def test_a_wrong_hash_is_400(client) -> None:
    response = client.get("/model_submission_details", params=_details(hash="12345"))
    assert response.status_code == 400
    assert response.json() == {"detail": "Hash does not match the model details"}


@pytest.mark.parametrize(("params", "field_name"), [
    ({"hash": "not-a-number"}, "hash"),
    ({"hash": "0" + H}, "hash"),  # 21 digits
    ({"hash": H.zfill(5001)}, "hash"),  # over Python's int() digit limit: never parsed
    ({"repo_namespace": ""}, "repo_namespace"),
    ({"repo_name": "a/b"}, "repo_name"),
    ({"repo_name": "x" * 97}, "repo_name"),
    ({"hotkey": "5Fss58"}, "hotkey"),
    ({"chat_template_type": "de\x00fault"}, "chat_template_type"),
    ({"chat_template_type": "t" * 65}, "chat_template_type"),
])
def test_malformed_or_missing_parameters_are_422_with_the_field(client, params, field_name):
    response = client.get("/model_submission_details", params=_details(**params))
    assert response.status_code == 422
    assert field_name in [e["loc"][-1] for e in response.json()["detail"]]
    missing = client.get("/model_submission_details", params={"hash": H})
    assert missing.status_code == 422
    assert {"repo_namespace", "repo_name", "hotkey"} <= {
        e["loc"][-1] for e in missing.json()["detail"]}


def test_ensure_model_publishes_an_unknown_submission_and_answers_queued(client, parts) -> None:
    store, publisher = parts
    body = {**_details(), "block": 500}
    response = client.post("/ensure_model", json=body, headers=ADMIN)
    assert response.status_code == 200 and response.json() == {"status": "QUEUED"}
    (sent,) = publisher.submitted
    assert (sent.hotkey, sent.block, sent.hash) == (HK, 500, H)
    _known(store, status="RUNNING", score=None)
    again = client.post("/ensure_model", json=body, headers=ADMIN).json()
    assert again == {"score": {"total_score": None}, "details": DETAILS,
                     "status": "RUNNING", "notes": None}
    assert len(publisher.submitted) == 1


def test_admin_routes_need_the_admin_key(client, parts) -> None:
    body = {**_details(), "block": 500}
    for headers in ({}, {"admin-key": "wrong"}, {"admin-key": ""}):
        for path, payload in (("/ensure_model", body),
                              ("/minerboard_update", {"hash": H, "uid": 1, "hotkey": HK,
                                                      "block": 5})):
            response = client.post(path, json=payload, headers=headers)
            assert response.status_code == 403
            assert response.json() == {"detail": "Invalid or missing admin key"}
    assert parts[1].submitted == [] and parts[1].boards == []


def test_without_a_configured_admin_key_every_admin_call_is_refused(parts) -> None:
    app = create_app(ApiSettings(), *parts, CollectorRegistry())
    with TestClient(app) as c:
        response = c.post("/minerboard_update", headers={"admin-key": ""},
                          json={"hash": H, "uid": 1, "hotkey": HK, "block": 5})
    assert response.status_code == 403


def test_ensure_model_checks_the_hash_and_the_body(client) -> None:
    wrong = client.post("/ensure_model", json={**_details(hash="7"), "block": 1}, headers=ADMIN)
    assert wrong.status_code == 400
    no_block = client.post("/ensure_model", json=_details(), headers=ADMIN)
    assert no_block.status_code == 422 and no_block.json()["detail"][0]["loc"][-1] == "block"
    bad_hotkey = client.post("/ensure_model", json={**_details(hotkey="5Fss58"), "block": 1},
                             headers=ADMIN)
    assert bad_hotkey.status_code == 422


def test_minerboard_update_publishes_and_answers_empty(client, parts) -> None:
    response = client.post("/minerboard_update", headers=ADMIN,
                           json={"hash": H, "uid": 7, "hotkey": HK, "block": 55,
                                 "admin_key": "ignored"})
    assert response.status_code == 200 and response.content == b""
    zero_padded = client.post("/minerboard_update", headers=ADMIN,
                              json={"hash": "000042", "uid": 4095, "hotkey": HK,
                                    "block": 2**32 - 1})
    assert zero_padded.status_code == 200
    assert [(b.uid, b.hash, b.block) for b in parts[1].boards] == [
        (7, H, 55), (4095, "42", 2**32 - 1)]


@pytest.mark.parametrize("field_value", [
    {"uid": 2**31}, {"uid": 4096}, {"uid": -1}, {"block": 2**32}, {"block": 10**4000},
    {"uid": 1.5}, {"uid": True}, {"block": "5"}, {"hash": "1" * 21}, {"hotkey": "x" * 64},
    {"hotkey": HK.upper()},
])
def test_minerboard_update_out_of_the_events_bounds_is_422(client, parts, field_value) -> None:
    body = {"hash": H, "uid": 7, "hotkey": HK, "block": 55, **field_value}
    response = client.post("/minerboard_update", headers=ADMIN, json=body)
    assert response.status_code == 422, response.text
    assert parts[1].boards == []


def test_lists_and_health(client, parts) -> None:
    store = parts[0]
    assert client.get("/minerboard").json() == []
    store.board = [MinerboardEntry(uid=1, hotkey=HK, hash=H, block=5, status="COMPLETED",
                                   repo_namespace="alice", repo_name="tts-1",
                                   safetensors_hash=None, total_score=0.4, timestamp=T,
                                   notes=None)]
    (entry,) = client.get("/minerboard").json()
    assert set(entry) == {"uid", "hotkey", "hash", "block", "status", "repo_namespace",
                          "repo_name", "safetensors_hash", "total_score", "timestamp", "notes"}
    store.recent = [RecentEntry(hash=str(i), status="QUEUED", repo_name="m",
                                repo_namespace="n", safetensors_hash=None, total_score=None,
                                timestamp=T, notes=None) for i in range(3)]
    assert len(client.get("/recent_entries").json()) == 2  # the configured limit
    assert client.get("/hc").json() == {"g": True, "k": False,
                                        "info": "speechstream validation API",
                                        "id": "speechstream-api"}
    assert client.get("/weights").status_code == 404
    store.vector = Weights(validator="v", epoch=2, block=200, uids=[0], weights=[1.0],
                           entries=[])
    assert client.get("/weights").json()["epoch"] == 2
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert 'speechstream_api_requests_total{code="404",route="/weights"} 1.0' in metrics.text


def test_a_nul_byte_is_422_and_reaches_no_query(client, parts) -> None:
    parts[0].vector = Weights(validator="v", epoch=2, block=200, uids=[], weights=[],
                              entries=[])
    response = client.get("/weights", params={"validator": "v\x00"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "validator"]
    body = {**_details(chat_template_type="a\x00"), "block": 1}
    assert client.post("/ensure_model", json=body, headers=ADMIN).status_code == 422
    surrogate = b'{"chat_template_type": "\\ud800"}'
    assert client.post("/ensure_model", content=surrogate, headers={
        **ADMIN, "content-type": "application/json"}).status_code == 422
    assert parts[1].submitted == []


def test_the_admin_key_is_checked_before_the_body_is_read(client, parts) -> None:
    """10 MB of bad JSON without the key: 403, its body never read; with the key: 413."""
    app = client.app
    reads = []

    async def receive() -> dict:
        reads.append(1)
        return {"type": "http.request", "body": b"{" * (10 * 2**20), "more_body": False}

    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    def call(headers: list[tuple[bytes, bytes]]) -> int:
        scope = {"type": "http", "method": "POST", "path": "/ensure_model", "headers": [
            (b"content-type", b"application/json"), *headers], "query_string": b"",
            "http_version": "1.1", "scheme": "http", "server": ("t", 80), "root_path": "",
            "client": ("c", 1), "app": app}
        sent.clear()
        client.portal.call(app, scope, receive, send)
        return sent[0]["status"]

    assert call([]) == 403 and reads == []
    assert call([(b"admin-key", b"wrong")]) == 403 and reads == []
    assert call([(b"admin-key", b"s3cret")]) == 413
    declared = client.post("/ensure_model", content=b"x" * (64 * 1024 + 1), headers={
        **ADMIN, "content-type": "application/json"})
    assert declared.status_code == 413
    assert declared.json() == {"detail": "request body over 65536 bytes"}
    assert client.post("/ensure_model", content=b"x" * (64 * 1024 + 1)).status_code == 403


@pytest.mark.parametrize("body", [
    b"{not json", b'{"uid": ' + b"9" * 5001 + b"}", b"[" * 60_000, b"\xff\xfe{}",
])
def test_a_body_that_does_not_parse_is_422(client, body) -> None:
    response = client.post("/minerboard_update", content=body,
                           headers={**ADMIN, "content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"


def test_the_openapi_document_lists_every_status(client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    statuses = {(method.upper(), path): set(op["responses"])
                for path, ops in paths.items() for method, op in ops.items()}
    assert statuses[("GET", "/model_submission_details")] == {"200", "400", "422", "503"}
    assert statuses[("POST", "/ensure_model")] == {"200", "400", "403", "413", "422", "503"}
    assert statuses[("POST", "/minerboard_update")] == {"200", "403", "413", "422", "503"}
    assert statuses[("GET", "/weights")] == {"200", "404", "422", "503"}
    assert statuses[("GET", "/minerboard")] == statuses[("GET", "/recent_entries")] == {
        "200", "503"}
    problem = paths["/weights"]["get"]["responses"]["404"]["content"]["application/json"]
    assert problem["schema"] == {"$ref": "#/components/schemas/Problem"}


def test_every_event_the_publisher_builds_is_valid_at_the_bounds(tmp_path) -> None:
    """The requests' bounds are the events' own: a request the API takes is an event."""
    sent = []

    class Producer:
        def send(self, topic: str, envelope: object) -> None:
            sent.append(envelope)

        def flush(self) -> None: ...

    operator = create_key_file(tmp_path / "operator.json")
    publisher = KafkaPublisher(KafkaSettings(), operator, producer=Producer())
    hotkey = "f" * 64
    for namespace, name, template, revision in (("a", "b", "t", None),
                                                ("n" * 96, "m" * 96, "é" * 64, "r" * 64)):
        publisher.submit(EnsureModelRequest(
            repo_namespace=namespace, repo_name=name, chat_template_type=template,
            revision=revision, hotkey=hotkey, block=2**32 - 1,
            hash=submission_hash(namespace, name, template, hotkey)))
    publisher.minerboard(MinerboardRequest(hash="9" * 20, uid=4095, hotkey=hotkey,
                                           block=2**32 - 1))
    assert len(sent) == 3


def test_a_database_outage_is_503_with_the_reason(client, parts) -> None:
    parts[0].down = True
    response = client.get("/model_submission_details", params=_details())
    assert response.status_code == 503
    assert "PostgreSQL did not answer" in response.json()["detail"]


def test_the_pages_without_postgresql_say_so(client: TestClient) -> None:
    # A store without the leaderboard's queries (this double): a 503 page, not a 500.
    answer = client.get("/board")
    assert answer.status_code == 503 and answer.headers["content-type"].startswith("text/html")
    assert "The pages read PostgreSQL" in answer.text
    assert client.get("/board/submissions/abc").status_code == 404  # judged before the store
    assert client.get("/board/static/style.css").status_code == 200
    # The original clients' OpenAPI document does not list the pages.
    assert not [p for p in client.get("/openapi.json").json()["paths"] if p.startswith("/board")]
