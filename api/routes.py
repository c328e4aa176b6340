"""The routes, one router per resource; the original clients' paths and shapes."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, Security
from fastapi.security import APIKeyHeader
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.models import (
    EnsureModelRequest,
    Entry,
    HealthCheck,
    MinerboardEntry,
    MinerboardRequest,
    Queued,
    RecentEntry,
    SubmissionDetails,
    Weights,
)
from api.publisher import Publisher
from api.store import Store
from schemas.hashing import submission_hash

HASH_MISMATCH = "Hash does not match the model details"
BAD_ADMIN_KEY = "Invalid or missing admin key"

submissions = APIRouter(tags=["submissions"])
minerboard = APIRouter(tags=["minerboard"])
entries = APIRouter(tags=["entries"])
weights = APIRouter(tags=["weights"])
service = APIRouter(tags=["service"])


def get_store(request: Request) -> Store:
    """The store opened in the app's lifespan."""
    return request.app.state.store


def get_publisher(request: Request) -> Publisher:
    """The publisher started in the app's lifespan."""
    return request.app.state.publisher


def require_admin(
    request: Request,
    key: Annotated[str | None, Security(APIKeyHeader(name="admin-key", auto_error=False))],
) -> None:
    """The ``admin-key`` header must be the configured admin key (compared in constant time);
    without a configured key every admin call is refused."""
    expected = request.app.state.settings.admin_key
    if expected is None or key is None or not hmac.compare_digest(
        key.encode(), expected.get_secret_value().encode()
    ):
        raise HTTPException(status_code=403, detail=BAD_ADMIN_KEY)


def _check_hash(hash_: str, namespace: str, name: str, template: str, hotkey: str) -> str:
    """The hash as the pipeline writes it; 400 when it is not the SPEC hash of the fields
    (compared as integers: a leading zero is no mismatch)."""
    if int(hash_) != int(submission_hash(namespace, name, template, hotkey)):
        raise HTTPException(status_code=400, detail=HASH_MISMATCH)
    return str(int(hash_))


StoreDep = Annotated[Store, Depends(get_store)]
Repo = Query(min_length=1, max_length=96)


@submissions.get("/model_submission_details", response_model=SubmissionDetails | None)
def model_submission_details(
    store: StoreDep,
    repo_namespace: Annotated[str, Repo],
    repo_name: Annotated[str, Repo],
    hash_: Annotated[str, Query(alias="hash", pattern=r"^0*[0-9]{1,20}$")],
    hotkey: Annotated[str, Query(min_length=1, max_length=128)],
    chat_template_type: Annotated[str, Query(min_length=1, max_length=64)] = "default",
) -> SubmissionDetails | None:
    """A submission's status and score; ``null`` when the pipeline does not know it."""
    canonical = _check_hash(hash_, repo_namespace, repo_name, chat_template_type, hotkey)
    return store.entry(canonical)


@submissions.post("/ensure_model", response_model=Entry | Queued,
                  dependencies=[Depends(require_admin)])
def ensure_model(
    body: EnsureModelRequest, store: StoreDep,
    publisher: Annotated[Publisher, Depends(get_publisher)],
) -> Entry | Queued:
    """The submission's entry if known; otherwise publish it (attested by the operator) and
    answer QUEUED."""
    canonical = _check_hash(body.hash, body.repo_namespace, body.repo_name,
                            body.chat_template_type, body.hotkey)
    found = store.entry(canonical)
    if found is not None:
        return Entry(**found.model_dump(exclude={"hash"}))
    publisher.submit(body)
    return Queued()


@minerboard.get("/minerboard", response_model=list[MinerboardEntry])
def get_minerboard(store: StoreDep) -> list[MinerboardEntry]:
    """Each uid's submission on the minerboard, with its status and score."""
    return store.minerboard()


@minerboard.post("/minerboard_update", dependencies=[Depends(require_admin)],
                 response_class=Response)
def minerboard_update(
    body: MinerboardRequest, publisher: Annotated[Publisher, Depends(get_publisher)]
) -> Response:
    """Set which submission stands for a uid (published; the sink materializes it)."""
    publisher.minerboard(body)
    return Response(status_code=200)


@entries.get("/recent_entries", response_model=list[RecentEntry])
def recent_entries(request: Request, store: StoreDep) -> list[RecentEntry]:
    """The newest submissions (256 by default), rejected ones as FAILED with their reason."""
    return store.recent_entries(request.app.state.settings.recent_entries)


@weights.get("/weights", response_model=Weights)
def latest_weights(
    store: StoreDep, validator: Annotated[str | None, Query(max_length=128)] = None
) -> Weights:
    """The latest weights vector (of ``validator`` when given)."""
    found = store.latest_weights(validator)
    if found is None:
        raise HTTPException(status_code=404, detail="no weights vector yet"
                            + (f" from validator {validator}" if validator else ""))
    return found


@service.get("/hc", response_model=HealthCheck)
def health_check() -> HealthCheck:
    """The original's health check."""
    return HealthCheck()


@service.get("/")
def root() -> dict[str, bool]:
    """The original's root health answer."""
    return {"g": True, "k": False}


@service.get("/metrics", response_class=Response)
def metrics(request: Request) -> Response:
    """Prometheus metrics of the API."""
    return Response(generate_latest(request.app.state.registry), media_type=CONTENT_TYPE_LATEST)
