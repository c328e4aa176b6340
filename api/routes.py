"""The routes, one router per resource; the original clients' paths and shapes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.guards import MAX_BODY_BYTES, AdminKeyFirst, require_admin
from api.models import (
    EXAMPLE_HASH,
    EXAMPLE_HOTKEY,
    EnsureModelRequest,
    Entry,
    HashField,
    HealthCheck,
    MinerboardEntry,
    MinerboardRequest,
    Problem,
    Queued,
    RecentEntry,
    SubmissionDetails,
    Template,
    ValidatorId,
    Weights,
)
from api.publisher import Publisher
from api.store import Store
from schemas.fields import Hotkey, RepoPart
from schemas.hashing import submission_hash

HASH_MISMATCH = "Hash does not match the model details"

submissions = APIRouter(tags=["submissions"], route_class=AdminKeyFirst)
minerboard = APIRouter(tags=["minerboard"], route_class=AdminKeyFirst)
entries = APIRouter(tags=["entries"], route_class=AdminKeyFirst)
weights = APIRouter(tags=["weights"], route_class=AdminKeyFirst)
service = APIRouter(tags=["service"], route_class=AdminKeyFirst)

_WHY = {
    400: "The hash is not the SPEC hash of the model details",
    403: "Invalid or missing admin key",
    404: "Nothing to answer yet",
    413: f"The request body is over {MAX_BODY_BYTES} bytes",
    503: "PostgreSQL or the broker did not answer, or the API has no operator key",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The error statuses a route answers besides 422, for the OpenAPI document."""
    return {code: {"model": Problem, "description": _WHY[code]} for code in codes}


def get_store(request: Request) -> Store:
    """The store opened in the app's lifespan."""
    return request.app.state.store


def get_publisher(request: Request) -> Publisher:
    """The publisher started in the app's lifespan."""
    return request.app.state.publisher


def _check_hash(hash_: str, namespace: str, name: str, template: str, hotkey: str) -> str:
    """``hash_`` (canonical: :data:`HashField` drops leading zeros); 400 when it is not the
    SPEC hash of the fields."""
    if hash_ != submission_hash(namespace, name, template, hotkey):
        raise HTTPException(status_code=400, detail=HASH_MISMATCH)
    return hash_


StoreDep = Annotated[Store, Depends(get_store)]


@submissions.get("/model_submission_details", response_model=SubmissionDetails | None,
                 responses=errors(400, 503))
def model_submission_details(
    store: StoreDep,
    repo_namespace: Annotated[RepoPart, Query(examples=["alice"])],
    repo_name: Annotated[RepoPart, Query(examples=["tts-1"])],
    hash_: Annotated[HashField, Query(alias="hash", examples=[EXAMPLE_HASH])],
    hotkey: Annotated[Hotkey, Query(examples=[EXAMPLE_HOTKEY])],
    chat_template_type: Annotated[Template, Query()] = "default",
) -> SubmissionDetails | None:
    """A submission's status and score; ``null`` when the pipeline does not know it."""
    canonical = _check_hash(hash_, repo_namespace, repo_name, chat_template_type, hotkey)
    return store.entry(canonical)


@submissions.post("/ensure_model", response_model=Entry | Queued,
                  dependencies=[Depends(require_admin)], responses=errors(400, 403, 413, 503))
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


@minerboard.get("/minerboard", response_model=list[MinerboardEntry], responses=errors(503))
def get_minerboard(store: StoreDep) -> list[MinerboardEntry]:
    """Each uid's submission on the minerboard, with its status and score."""
    return store.minerboard()


@minerboard.post("/minerboard_update", dependencies=[Depends(require_admin)],
                 response_class=Response, responses={
                     200: {"description": "Published (an empty body)"},
                     **errors(403, 413, 503)})
def minerboard_update(
    body: MinerboardRequest, publisher: Annotated[Publisher, Depends(get_publisher)]
) -> Response:
    """Set which submission stands for a uid (published; the sink materializes it)."""
    publisher.minerboard(body)
    return Response(status_code=200)


@entries.get("/recent_entries", response_model=list[RecentEntry], responses=errors(503))
def recent_entries(request: Request, store: StoreDep) -> list[RecentEntry]:
    """The newest submissions (256 by default), rejected ones as FAILED with their reason."""
    return store.recent_entries(request.app.state.settings.recent_entries)


@weights.get("/weights", response_model=Weights, responses=errors(404, 503))
def latest_weights(
    store: StoreDep, validator: Annotated[ValidatorId | None, Query()] = None
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


@service.get("/metrics", response_class=Response, responses={
    200: {"description": "Prometheus' text format",
          "content": {"text/plain": {"schema": {"type": "string"}}}}})
def metrics(request: Request) -> Response:
    """Prometheus metrics of the API."""
    return Response(generate_latest(request.app.state.registry), media_type=CONTENT_TYPE_LATEST)
