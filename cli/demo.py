"""The main job: the whole pipeline on the local stack, from three miners to a leaderboard.

Builds three small TTS models of a real architecture, registers four miners, publishes three
valid submissions and one that must be rejected, runs the intake worker, one evaluator, the
sink, a validator and the REST API as child processes, shows progress, moves the chain's head
to the next epoch, and ends with the leaderboard from PostgreSQL, the validator's weights and
the API's answer for one submission.
Everything is deterministic (keys, blocks, event ids): running it again changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg

from cli.exceptions import DemoTimeoutError
from consumers.validator import latest_vector
from devstack.host import free_port
from devstack.processes import ServiceProcess
from devstack.stack import DevStack
from producers.miner import publish, registration, submission
from schemas.envelope import derived_event_id, new_envelope
from schemas.events import ChainBlock, WeightsComputed
from sinks.queries import LeaderboardRow, leaderboard, registered_hotkeys
from speechstream.keys import Hotkey, create_key_file, load_key_file
from speechstream.settings import DatabaseSettings, DevSettings, KafkaSettings


@dataclass(frozen=True)
class DemoMiner:
    """One demo miner: its name (also the repo namespace), uid and model."""

    name: str
    uid: int
    repo_name: str
    seed: int
    head_scale: float
    bad_hash: bool = False


MINERS = (
    DemoMiner("alice", 0, "tts-tiny-a", seed=1, head_scale=0.5),
    DemoMiner("bob", 1, "tts-tiny-b", seed=2, head_scale=2.0),
    DemoMiner("carol", 2, "tts-tiny-c", seed=3, head_scale=6.0),
    # Publishes a submission whose hash does not match its fields: the validator rejects it.
    DemoMiner("mallory", 3, "tts-tiny-m", seed=4, head_scale=1.0, bad_hash=True),
)
REGISTRATION_BLOCK = 100
SUBMISSION_BLOCK = 5_000
EPOCH_BLOCKS = 100
VALIDATOR_ID = "demo-validator"


@dataclass(frozen=True)
class DemoOptions:
    """Where the demo keeps its files and how much work each evaluation does."""

    state_dir: Path = Path(".speechstream/demo")
    samples: int = 16
    timeout_s: float = 900.0
    device: str = "cpu"


@dataclass(frozen=True)
class DemoResult:
    """What the demo ends with: the leaderboard, the validator's weights, the API's answer."""

    leaderboard: list[LeaderboardRow]
    weights: WeightsComputed
    api_url: str
    api_answer: dict[str, Any] | None


def run_demo(
    options: DemoOptions,
    kafka: KafkaSettings,
    database: DatabaseSettings,
    dev: DevSettings,
    *,
    say: Callable[[str], None] = print,
) -> DemoResult:
    """Run the whole pipeline once; return the leaderboard, the weights and an API answer."""
    say("== 1/6 local stack")
    up = DevStack(dev).up(kafka)
    for state in up.services:
        say(f"   {state.describe()}")
    kafka = kafka.model_copy(update={"bootstrap_servers": up.bootstrap_servers})
    conninfo = up.database_url

    say("== 2/6 models and miners")
    models_root = (options.state_dir / "models").resolve()
    keys = {m.name: _key(options.state_dir / "keys" / f"{m.name}.json") for m in MINERS}
    for miner in MINERS:
        path = models_root / miner.name / miner.repo_name
        if not (path / "config.json").exists():
            from devstack.tiny.musicgen import build_tiny_musicgen

            build_tiny_musicgen(path, seed=miner.seed, size="tiny", head_scale=miner.head_scale)
        say(f"   {miner.name}: uid {miner.uid}, model {miner.name}/{miner.repo_name}")

    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "SPEECHSTREAM_TOPIC_PREFIX": kafka.topic_prefix,
        "DATABASE_URL": conninfo,
        "SPEECHSTREAM_SCORING_MODELS_ROOT": str(models_root),
        "SPEECHSTREAM_SCORING_N_SAMPLES": str(options.samples),
        "SPEECHSTREAM_STREAMS_WEB_ENABLED": "false",
        "SPEECHSTREAM_STREAMS_DATA_DIR": str((options.state_dir / "streams").resolve()),
        "SPEECHSTREAM_VALIDATOR_VALIDATOR_ID": VALIDATOR_ID,
        "SPEECHSTREAM_VALIDATOR_EPOCH_BLOCKS": str(EPOCH_BLOCKS),
    }
    api_port = free_port()
    api_url = f"http://127.0.0.1:{api_port}"
    logs = options.state_dir / "logs"
    services = [
        ServiceProcess("streams", ["streams", "worker"], logs / "streams.log", env),
        ServiceProcess(
            "evaluator", ["evaluator", "run", "--device", options.device],
            logs / "evaluator.log", env,
        ),
        ServiceProcess("sink", ["sink", "run"], logs / "sink.log", env),
        ServiceProcess("validator", ["validator", "run"], logs / "validator.log", env),
        ServiceProcess("api", ["api", "run", "--port", str(api_port)], logs / "api.log", env),
    ]
    say(f"== 3/6 services (logs in {logs})")
    try:
        for service in services:
            service.start()
            say(f"   {service.name}: pid {service.process.pid if service.process else '?'}")

        say("== 4/6 registrations and submissions")
        publish(
            kafka,
            kafka.topics.registrations,
            [registration(keys[m.name], uid=m.uid, block=REGISTRATION_BLOCK) for m in MINERS],
        )
        _wait(
            lambda: _registered(conninfo, [k.hotkey for k in keys.values()]),
            services, options.timeout_s, "the registrations to reach PostgreSQL",
        )
        subs = [_submission(keys[m.name], m) for m in MINERS]
        publish(kafka, kafka.topics.submissions, subs)
        for miner in MINERS:
            note = "  (hash does not match: must be rejected)" if miner.bad_hash else ""
            say(f"   {miner.name}: submitted {miner.name}/{miner.repo_name}{note}")

        say("== 5/6 evaluation")
        started = time.monotonic()
        last = ""
        hashes = {e.payload.hash for e in subs}

        def finished() -> bool:
            nonlocal last
            rows = _rows(conninfo, hashes)
            line = ", ".join(f"{r.repo} {r.status}" for r in rows)
            if line != last:
                say(f"   [{time.monotonic() - started:5.0f}s] {line or 'waiting'}")
                last = line
            done = {r.hash for r in rows if r.status in ("COMPLETED", "FAILED", "REJECTED")}
            return done >= hashes

        _wait(finished, services, options.timeout_s, "every submission to finish")

        head = SUBMISSION_BLOCK + EPOCH_BLOCKS
        epoch = head // EPOCH_BLOCKS
        say(f"== 6/6 weights: the chain reaches block {head} (epoch {epoch})")
        publish(kafka, kafka.topics.chain_blocks, [
            new_envelope(ChainBlock(block=head), key=None, producer="speechstream-demo",
                         event_id=derived_event_id(str(head), "chain")),
        ])
        _wait(lambda: _has_vector(conninfo, epoch), services, options.timeout_s,
              f"the validator's weights of epoch {epoch}")
        vector = latest_vector(kafka, VALIDATOR_ID)
        assert vector is not None
        alice = next(e.payload for e in subs if e.payload.repo_namespace == "alice")
        answer = httpx.get(f"{api_url}/model_submission_details", timeout=10, params={
            "repo_namespace": alice.repo_namespace, "repo_name": alice.repo_name,
            "hash": alice.hash, "chat_template_type": alice.config_template,
            "hotkey": alice.hotkey,
        }).json()
    finally:
        for service in reversed(services):
            service.stop()
    with psycopg.connect(conninfo) as conn:
        board = leaderboard(conn)
    return DemoResult(board, vector, api_url, answer)


def _has_vector(conninfo: str, epoch: int) -> bool:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute("SELECT count(*) FROM weights WHERE validator = %s AND epoch = %s",
                           (VALIDATOR_ID, epoch)).fetchone()
    return bool(row and row[0])


def _key(path: Path) -> Hotkey:
    return load_key_file(path) if path.exists() else create_key_file(path)


def _submission(key: Hotkey, miner: DemoMiner):  # noqa: ANN202 - an Envelope
    return submission(
        key,
        repo_namespace=miner.name,
        repo_name=miner.repo_name,
        block=SUBMISSION_BLOCK,
        hash_override="1234567890" if miner.bad_hash else None,
    )


def _registered(conninfo: str, hotkeys: list[str]) -> bool:
    with psycopg.connect(conninfo) as conn:
        return len(registered_hotkeys(conn, hotkeys)) == len(hotkeys)


def _rows(conninfo: str, hashes: set[str]) -> list[LeaderboardRow]:
    with psycopg.connect(conninfo) as conn:
        return [row for row in leaderboard(conn) if row.hash in hashes]


def _wait(
    done: Callable[[], bool], services: list[ServiceProcess], timeout_s: float, what: str
) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        for service in services:
            service.check()
        if time.monotonic() > deadline:
            raise DemoTimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(1.0)
