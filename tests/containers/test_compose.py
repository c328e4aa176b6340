"""The compose stack, as an operator runs it: ``docker-compose.kafka.yml`` up on the project's
images, a miner registers and submits with the miner command, a tiny model of the real
architecture is scored COMPLETED, a chain tick gives the validator's weights, the API answers
for the submission, and everything goes down with its volumes.

Needs a Docker engine and the images (``speechstream dev images``); runs only with
``SPEECHSTREAM_TEST_CONTAINERS=1`` (marked ``containers``), on free host ports and a compose
project of its own.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devstack.images import Docker, images
from tests.conftest import pick_ports

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.kafka.yml"
SERVICES = ("streams", "evaluator", "auditor", "sink", "validator", "api", "prometheus")

pytestmark = [
    pytest.mark.containers,
    pytest.mark.skipif(os.environ.get("SPEECHSTREAM_TEST_CONTAINERS") != "1",
                       reason="SPEECHSTREAM_TEST_CONTAINERS=1 runs the container tests"),
]


def _compose_command() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return ["docker", "compose"]


class Stack:
    """One compose project of the stack on free ports."""

    def __init__(self) -> None:
        self.project = f"sstest{uuid.uuid4().hex[:8]}"
        kafka, api, prometheus = pick_ports(3)
        self.api_url = f"http://127.0.0.1:{api}"
        self.prometheus_url = f"http://127.0.0.1:{prometheus}"
        self.env = {**os.environ, "SPEECHSTREAM_COMPOSE_KAFKA_PORT": str(kafka),
                    "SPEECHSTREAM_COMPOSE_API_PORT": str(api),
                    "SPEECHSTREAM_COMPOSE_PROMETHEUS_PORT": str(prometheus),
                    "SPEECHSTREAM_SCORING_N_SAMPLES": "2"}

    def compose(self, *args: str, timeout: float = 600) -> str:
        argv = [*_compose_command(), "-f", str(COMPOSE_FILE), "-p", self.project, *args]
        proc = subprocess.run(argv, env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=False)
        if proc.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n"
                                 f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return proc.stdout

    def run(self, service: str, *args: str, entrypoint: str | None = None) -> str:
        """A one-off command in ``service``'s image and environment."""
        extra = ["--entrypoint", entrypoint] if entrypoint else []
        out = self.compose("run", "--rm", "--no-deps", *extra, service, *args)
        return "\n".join(line for line in out.splitlines() if not line.startswith("%"))

    def sql(self, query: str) -> str:
        return self.compose("exec", "-T", "postgres", "psql", "-U", "speechstream", "-d",
                            "speechstream", "-tA", "-c", query).strip()

    def status(self) -> dict[str, str]:
        """Each container's state and health, by service."""
        ids = self.compose("ps", "-q").split()
        states = {}
        for cid in ids:
            raw = subprocess.run(["docker", "inspect", cid], capture_output=True, text=True,
                                 check=True).stdout
            (info,) = json.loads(raw)
            service = info["Config"]["Labels"]["com.docker.compose.service"]
            health = info["State"].get("Health", {}).get("Status", "none")
            states[service] = f"{info['State']['Status']}/{health}"
        return states


def _wait(check: Callable[[], bool], what: str, timeout_s: float,
          detail: Callable[[], object] = lambda: "") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(2)
    raise AssertionError(f"{what}: not within {timeout_s:.0f}s ({detail()})")


def _get(url: str) -> dict | list:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.loads(answer.read())


@pytest.fixture
def stack() -> Iterator[Stack]:
    docker = Docker()
    if not docker.answers():
        pytest.fail("no Docker engine answers")
    missing = [i.tag for i in images() if not docker.has_image(i.tag)]
    if missing:
        pytest.fail(f"build the images first (speechstream dev images): missing {missing}")
    stack = Stack()
    try:
        yield stack
    finally:
        stack.compose("down", "-v", "--remove-orphans")
        leftover = subprocess.run(["docker", "volume", "ls", "-q", "--filter",
                                   f"label=com.docker.compose.project={stack.project}"],
                                  capture_output=True, text=True, check=True).stdout.split()
        assert leftover == [], f"volumes left after down -v: {leftover}"


def test_the_compose_stack_scores_a_submission_and_publishes_weights(stack: Stack) -> None:
    started = time.monotonic()
    stack.compose("up", "-d")

    def healthy() -> bool:
        states = stack.status()
        return all(states.get(s) == "running/healthy" for s in SERVICES)

    _wait(healthy, "every service healthy", 300, stack.status)
    up_s = time.monotonic() - started

    stack.run("evaluator", "-c", "from devstack.tiny.musicgen import build_tiny_musicgen; "
              "build_tiny_musicgen('/data/models/alice/tts-tiny', seed=1, size='tiny', "
              "head_scale=0.5)", entrypoint="python3")
    stack.run("streams", "miner", "keygen", "--key-file", "/data/state/alice.json")
    stack.run("streams", "miner", "register", "--key-file", "/data/state/alice.json",
              "--uid", "0", "--block", "100")
    _wait(lambda: stack.sql("SELECT count(*) FROM miners") == "1", "the registration", 120)
    submitted = stack.run("streams", "miner", "submit", "--key-file", "/data/state/alice.json",
                          "--repo", "alice/tts-tiny", "--block", "5000")
    fields = dict(part.split("=", 1) for part in submitted.split() if "=" in part)
    hash_ = fields["hash"]

    def status() -> str:
        return stack.sql(f"SELECT status FROM submissions WHERE hash = '{hash_}'")

    _wait(lambda: status() in ("COMPLETED", "FAILED"), "the submission scored", 600, status)
    assert status() == "COMPLETED"

    stack.run("streams", "chain", "tick", "--block", "5100")
    _wait(lambda: stack.sql("SELECT count(*) FROM weights WHERE epoch = 51") == "1",
          "the validator's weights of epoch 51", 120)
    vector = json.loads(stack.run("validator", "validator", "weights", "--json"))
    assert vector["epoch"] == 51 and vector["weights"], vector

    hotkey = stack.sql("SELECT hotkey FROM miners WHERE uid = 0")
    answer = _get(f"{stack.api_url}/model_submission_details?repo_namespace=alice"
                  f"&repo_name=tts-tiny&hash={hash_}&chat_template_type=default"
                  f"&hotkey={hotkey}")
    assert answer["score"]["total_score"] > 0, answer
    targets = _get(f"{stack.prometheus_url}/api/v1/targets")["data"]["activeTargets"]
    assert {t["labels"]["job"]: t["health"] for t in targets} == {
        job: "up" for job in ("streams", "evaluator", "auditor", "sink", "validator", "api")}
    print(f"\ncompose: every service healthy {up_s:.0f}s after up; whole test "
          f"{time.monotonic() - started:.0f}s")
