"""Schemathesis against the REST API in-process (ASGI), over a real database and broker,
anonymously and with the admin key: every check, the examples, coverage and fuzzing phases, as
``schemathesis run`` does them (its engine; the pytest plugin's lazy fixtures do not run on
pytest 9). Any failure (a 500, a status or body the OpenAPI document does not list, bad input
accepted, good input refused) fails the test with the request that reproduces it."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import schemathesis
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from pydantic import SecretStr
from schemathesis import engine
from schemathesis.engine import Status, events
from schemathesis.python import asgi

from api.app import create_app
from api.publisher import KafkaPublisher
from api.settings import ApiSettings
from api.store import PostgresStore
from speechstream.keys import create_key_file

pytestmark = pytest.mark.integration

ADMIN_KEY = "admin-s3cret"
MAX_EXAMPLES = 200
"""Per operation, in the fuzzing phase: each run takes under a minute on 2 cores."""


def schemathesis_config(*, admin: bool) -> schemathesis.Config:
    """Every check (``max_response_time`` generous: a CI machine is slow), positive and
    negative data, NUL bytes included, in the examples, coverage and fuzzing phases."""
    config: dict = {
        "checks": {
            "enabled": True,
            # 400: a hash that is not the SPEC hash of the other fields (no schema can say so).
            "positive_data_acceptance": {"expected-statuses": [
                "2xx", "400", "401", "403", "404", "409", "429", "5xx"]},
            "max_response_time": 30.0,
        },
        "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "allow-x00": True,
                       "database": "none"},
        "phases": {"examples": {"enabled": True}, "coverage": {"enabled": True},
                   "fuzzing": {"enabled": True}, "stateful": {"enabled": False}},
        "suppress-health-check": ["too_slow", "filter_too_much", "data_too_large"],
    }
    if admin:
        config["auth"] = {"openapi": {"APIKeyHeader": {"api_key": ADMIN_KEY}}}
    return schemathesis.Config.from_dict(config)


@dataclass
class Outcome:
    """What a run did: cases per phase, statuses per operation, each failure's report."""

    cases: Counter = field(default_factory=Counter)
    statuses: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    completed: bool = False
    seconds: float = 0.0


def run_schemathesis(app: FastAPI, *, admin: bool) -> Outcome:
    """Schemathesis' engine over ``app``'s OpenAPI document."""
    started = time.monotonic()
    schema = schemathesis.openapi.from_asgi("/openapi.json", app,
                                            config=schemathesis_config(admin=admin))
    outcome = Outcome()
    for event in engine.from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            recorder = event.recorder
            outcome.cases[event.phase.value] += len(recorder.cases)
            for interaction in recorder.interactions.values():
                if interaction.response is not None:
                    outcome.statuses[recorder.label, interaction.response.status_code] += 1
            for checks in recorder.checks.values():
                for check in checks:
                    if check.status == Status.FAILURE and check.failure_info is not None:
                        failure = check.failure_info.failure
                        outcome.failures.append(
                            f"{recorder.label} {check.name}: {failure.title}\n"
                            f"{failure.message}\n{check.failure_info.code_sample}")
        elif isinstance(event, events.NonFatalError):
            outcome.failures.append(f"{event.label}: {event.info.format()}")
        elif isinstance(event, events.FatalError):
            outcome.failures.append(f"schemathesis failed: {event.exception!r}")
        elif isinstance(event, events.EngineFinished):
            outcome.completed = event.stop_reason == engine.StopReason.COMPLETED
    outcome.seconds = time.monotonic() - started
    return outcome


@pytest.fixture
def api_app(db_conninfo: str, kafka_settings, tmp_path) -> Iterator[FastAPI]:
    """The API over the test's database and topics, with an admin key and an operator key
    (schemathesis starts its lifespan once; it is shut down after the test)."""
    operator = create_key_file(tmp_path / "operator.json")
    app = create_app(ApiSettings(admin_key=SecretStr(ADMIN_KEY)), PostgresStore(db_conninfo),
                     KafkaPublisher(kafka_settings, operator), CollectorRegistry())
    try:
        yield app
    finally:
        asgi.shutdown_lifespans()


@pytest.mark.parametrize("admin", [False, True], ids=["anonymous", "admin-key"])
def test_schemathesis_finds_no_failure(api_app: FastAPI, admin: bool) -> None:
    outcome = run_schemathesis(api_app, admin=admin)
    print(f"schemathesis ({'admin key' if admin else 'anonymous'}): {dict(outcome.cases)} "
          f"cases in {outcome.seconds:.0f} s")
    assert outcome.failures == [], "\n\n".join(dict.fromkeys(outcome.failures))
    assert outcome.completed
    assert outcome.cases["coverage"] > 100 and outcome.cases["fuzzing"] > 50
    admin_status = 200 if admin else 403
    # The documented examples reach the broker with the key (a real ensure_model publishes).
    assert outcome.statuses["POST /ensure_model", admin_status] > 0
    assert outcome.statuses["POST /minerboard_update", admin_status] > 0
    assert outcome.statuses["GET /model_submission_details", 200] > 0
