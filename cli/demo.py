"""The main job: the whole pipeline on the local stack, from three miners to a leaderboard.

Builds three small TTS models of a real architecture, registers four miners, publishes three
valid submissions and one that must be rejected, runs the intake worker, one evaluator, the
sink, a validator and the REST API as child processes, waits until each answers as ready,
shows progress, moves the chain's head to the next epoch, and ends with the leaderboard from
PostgreSQL, the validator's weights and the API's answer for one submission.

Each run is on its own: a topic prefix (``<prefix>demo-<run>.``, under which its consumer
groups, the intake worker's changelog topics and the evaluator's transactional id are named
too) and a database (``speechstream_demo_<run>``, migrated) of its own on the stack, so nothing
an earlier run left is read. A run removes the earlier runs' topics and databases (and their
directories under ``runs/``) that no client is connected to; its own stay until the next run.
The events are deterministic (keys, blocks, event ids), so every run ends the same way.

Every service runs with a key of its own, trusted by the run's operator root key
(``SPEECHSTREAM_TRUST_OPERATOR_KEY``): every event it writes is signed, and every reader
refuses what the key that signed it may not say (docs/security.md).
"""

from __future__ import annotations

import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

from cli.demo_security import Principals, demo_trust
from cli.exceptions import DemoTimeoutError, ServiceNotReadyError
from consumers.settings import EvaluatorSettings, ValidatorSettings
from consumers.validator import latest_vector
from devstack.databases import create_database, drop_database_unless_used, labelled_databases
from devstack.host import free_port
from devstack.processes import ServiceProcess
from devstack.prometheus import write_targets
from devstack.stack import DevStack
from producers.miner import publish, registration, submission
from schemas.envelope import derived_event_id, new_envelope
from schemas.events import ChainBlock, WeightsComputed
from sinks.queries import LeaderboardRow, leaderboard, registered_hotkeys
from sinks.settings import SinkSettings
from speechstream.kafka.admin import create_topics, delete_topics, describe_topics
from speechstream.kafka.producer import EventProducer
from speechstream.keys import Hotkey, create_key_file, load_key_file
from speechstream.settings import DatabaseSettings, DevSettings, KafkaSettings
from speechstream.trust import TrustStore


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
EVALUATOR_ID = "demo-evaluator"
RUN_LABEL = "speechstream demo run "
"""How a run's database comment starts: ``speechstream demo run <run id>, topic prefix <p>``."""


@dataclass(frozen=True)
class DemoOptions:
    """Where the demo keeps its files and how much work each evaluation does."""

    state_dir: Path = Path(".speechstream/demo")
    samples: int = 16
    timeout_s: float = 900.0
    ready_timeout_s: float = 300.0
    device: str = "cpu"
    linger_s: float = 0.0
    """How long the services keep running after the last step (a Prometheus scraping them,
    `dev up --prometheus`, reads their final numbers: more than its 5 s scrape interval)."""


@dataclass(frozen=True)
class DemoRun:
    """One run's own names: its id, its topic prefix and its database."""

    run_id: str
    topic_prefix: str
    database: str

    @classmethod
    def new(cls, base_prefix: str) -> DemoRun:
        """A run named by the time it starts (UTC) and a random token."""
        stamp, token = datetime.now(UTC).strftime("%Y%m%d%H%M%S"), secrets.token_hex(3)
        return cls(f"{stamp}-{token}", f"{base_prefix}demo-{stamp}-{token}.",
                   f"speechstream_demo_{stamp}_{token}")

    @classmethod
    def from_label(cls, database: str, label: str) -> DemoRun | None:
        """The run a database's label names, or None when the label is not a run's."""
        run_id, sep, prefix = label.removeprefix(RUN_LABEL).partition(", topic prefix ")
        if not sep or not run_id or f"demo-{run_id}." not in prefix or not prefix.endswith("."):
            return None
        return cls(run_id, prefix, database)

    @property
    def label(self) -> str:
        """The comment of the run's database (what a later run reads to remove it)."""
        return f"{RUN_LABEL}{self.run_id}, topic prefix {self.topic_prefix}"

    def directory(self, state_dir: Path) -> Path:
        """The run's logs and the intake worker's state."""
        return state_dir / "runs" / self.run_id


@dataclass(frozen=True)
class DemoResult:
    """What the demo ends with: the leaderboard, the validator's weights, the API's answer,
    and the run's own topic prefix and database."""

    leaderboard: list[LeaderboardRow]
    weights: WeightsComputed
    api_url: str
    api_answer: dict[str, Any] | None
    run: DemoRun
    database_url: str
    evaluation_s: float
    """Seconds from the submissions to every one scored or rejected (phase 5)."""


def run_demo(
    options: DemoOptions,
    kafka: KafkaSettings,
    database: DatabaseSettings,
    dev: DevSettings,
    *,
    say: Callable[[str], None] = print,
) -> DemoResult:
    """Run the whole pipeline once, on a topic prefix and a database of its own; return the
    leaderboard, the weights and an API answer."""
    say("== 1/6 local stack")
    stack = DevStack(dev)
    up = stack.up(kafka)
    for state in up.services:
        say(f"   {state.describe()}")
    run = DemoRun.new(kafka.topic_prefix)
    kafka = KafkaSettings(**{"KAFKA_BOOTSTRAP_SERVERS": up.bootstrap_servers,
                             "SPEECHSTREAM_TOPIC_PREFIX": run.topic_prefix,
                             **dict(up.client_env)})  # the admin's, on a broker with SASL
    principals = Principals(kafka, stack.kafka.security if up.client_env else None)
    removed = remove_earlier_runs(up.database_url, kafka, options.state_dir)
    if removed:
        say(f"   removed {len(removed)} earlier run(s) (topics, database, files): "
            f"{', '.join(removed)}")
    conninfo, migrations = create_database(up.database_url, run.database, label=run.label)
    topics = create_topics(kafka)
    say(f"   this run: {run.run_id}: {len(topics)} topics under {run.topic_prefix}, "
        f"database {run.database} ({len(migrations)} migrations); kept until the next run")
    # Held while the run lasts: a later run never removes a database someone is connected to.
    with psycopg.connect(conninfo, autocommit=True) as conn:
        return _run(options, run, principals, conninfo, conn, say,
                    stack.prometheus.targets_dir)


def remove_earlier_runs(server_url: str, kafka: KafkaSettings, state_dir: Path) -> list[str]:
    """Drop the demo runs' databases on the server that no client is connected to, delete
    their topics and their directories under ``state_dir``; return their run ids."""
    removed: list[str] = []
    for name, label in sorted(labelled_databases(server_url, RUN_LABEL).items()):
        old = DemoRun.from_label(name, label)
        if old is None or not drop_database_unless_used(server_url, name):
            continue
        names = [t.name for t in describe_topics(kafka, prefix=old.topic_prefix)]
        delete_topics(kafka, names)
        shutil.rmtree(old.directory(state_dir), ignore_errors=True)
        removed.append(old.run_id)
    return removed


def _run(
    options: DemoOptions, run: DemoRun, principals: Principals, conninfo: str,
    conn: psycopg.Connection, say: Callable[[str], None], targets_dir: Path,
) -> DemoResult:
    kafka = principals.admin
    say("== 2/6 models and miners")
    models_root = (options.state_dir / "models").resolve()
    keys = {m.name: _key(options.state_dir / "keys" / f"{m.name}.json") for m in MINERS}
    for miner in MINERS:
        path = models_root / miner.name / miner.repo_name
        if not (path / "config.json").exists():
            from devstack.tiny.musicgen import build_tiny_musicgen

            build_tiny_musicgen(path, seed=miner.seed, size="tiny", head_scale=miner.head_scale)
        say(f"   {miner.name}: uid {miner.uid}, model {miner.name}/{miner.repo_name}")

    run_dir = run.directory(options.state_dir).resolve()
    prefix = kafka.topic_prefix
    allowed = principals.allow(EvaluatorSettings(group_id=f"{prefix}evaluators"),
                               SinkSettings(group_id=f"{prefix}sink"),
                               ValidatorSettings(client_name=f"{prefix}validator"))
    if principals.security is not None:
        say(f"   broker: SASL over TLS, each service its own principal ({allowed} ACLs "
            "for this run)")
    trust_env, chain = demo_trust(run_dir / "keys", principals.of("operator"),
                                  f"{EVALUATOR_ID}-{options.device}", VALIDATOR_ID, say)
    env = {
        **trust_env,
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "SPEECHSTREAM_TOPIC_PREFIX": prefix,
        "DATABASE_URL": conninfo,
        "SPEECHSTREAM_SCORING_MODELS_ROOT": str(models_root),
        "SPEECHSTREAM_SCORING_N_SAMPLES": str(options.samples),
        "SPEECHSTREAM_STREAMS_WEB_ENABLED": "false",
        "SPEECHSTREAM_STREAMS_DATA_DIR": str(run_dir / "streams"),
        # Groups (and so the evaluator's transactional id) of the run's own; the intake
        # worker's group and changelog topics are its app id under the prefix.
        "SPEECHSTREAM_EVALUATOR_GROUP_ID": f"{prefix}evaluators",
        "SPEECHSTREAM_SINK_GROUP_ID": f"{prefix}sink",
        "SPEECHSTREAM_VALIDATOR_CLIENT_NAME": f"{prefix}validator",
        "SPEECHSTREAM_VALIDATOR_VALIDATOR_ID": VALIDATOR_ID,
        "SPEECHSTREAM_EVALUATOR_EVALUATOR_ID": EVALUATOR_ID,
        "SPEECHSTREAM_VALIDATOR_EPOCH_BLOCKS": str(EPOCH_BLOCKS),
    }
    api_port = free_port()
    api_url = f"http://127.0.0.1:{api_port}"
    logs = run_dir / "logs"
    ready: list[tuple[ServiceProcess, str]] = []
    scraped = {"api": f"127.0.0.1:{api_port}"}
    for name, args in (
        ("streams", ["streams", "worker"]),
        ("evaluator", ["evaluator", "run", "--device", options.device]),
        ("sink", ["sink", "run"]),
        ("validator", ["validator", "run"]),
    ):
        port = free_port()
        service = ServiceProcess(name, [*args, "--metrics-port", str(port)],
                                 logs / f"{name}.log", {**env, **principals.environment(name)})
        ready.append((service, f"http://127.0.0.1:{port}/health"))
        scraped[name] = f"127.0.0.1:{port}"
    # The dev stack's Prometheus (`dev up --prometheus`) scrapes this run's services.
    write_targets(targets_dir, "demo", scraped)
    api = ServiceProcess("api", ["api", "run", "--port", str(api_port)], logs / "api.log",
                         {**env, **principals.environment("api")})
    ready.append((api, f"{api_url}/hc"))
    services = [service for service, _ in ready]
    say(f"== 3/6 services (logs in {logs})")
    try:
        for service in services:
            service.start()
            say(f"   {service.name}: pid {service.process.pid if service.process else '?'}")
        _wait_ready(ready, options.ready_timeout_s, say)

        say("== 4/6 registrations and submissions")
        publish(
            principals.of("miner"),
            kafka.topics.registrations,
            [registration(keys[m.name], uid=m.uid, block=REGISTRATION_BLOCK) for m in MINERS],
        )
        hotkeys = [k.hotkey for k in keys.values()]
        _wait(lambda: len(registered_hotkeys(conn, hotkeys)) == len(hotkeys),
              services, options.timeout_s, "the registrations to reach PostgreSQL", logs)
        subs = [_submission(keys[m.name], m) for m in MINERS]
        publish(principals.of("miner"), kafka.topics.submissions, subs)
        for miner in MINERS:
            note = "  (hash does not match: must be rejected)" if miner.bad_hash else ""
            say(f"   {miner.name}: submitted {miner.name}/{miner.repo_name}{note}")

        say("== 5/6 evaluation")
        started = time.monotonic()
        last = ""
        hashes = {e.payload.hash for e in subs}

        def finished() -> bool:
            nonlocal last
            rows = [row for row in leaderboard(conn) if row.hash in hashes]
            line = ", ".join(f"{r.repo} {r.status}" for r in rows)
            if line != last:
                say(f"   [{time.monotonic() - started:5.0f}s] {line or 'waiting'}")
                last = line
            done = {r.hash for r in rows if r.status in ("COMPLETED", "FAILED", "REJECTED")}
            return done >= hashes

        _wait(finished, services, options.timeout_s, "every submission to finish", logs)
        evaluation_s = time.monotonic() - started
        say(f"   every submission finished in {evaluation_s:.1f}s")

        head = SUBMISSION_BLOCK + EPOCH_BLOCKS
        epoch = head // EPOCH_BLOCKS
        say(f"== 6/6 weights: the chain reaches block {head} (epoch {epoch})")
        with EventProducer(principals.of("chain"), signer=chain) as producer:
            producer.send(kafka.topics.chain_blocks, new_envelope(
                ChainBlock(block=head), key=None, producer="speechstream-demo",
                event_id=derived_event_id(str(head), "chain")))
            producer.flush()
        _wait(lambda: _has_vector(conn, epoch), services, options.timeout_s,
              f"the validator's weights of epoch {epoch}", logs)
        trust = TrustStore(kafka, trust_env["SPEECHSTREAM_TRUST_OPERATOR_KEY"], name="demo")
        try:
            vector = latest_vector(kafka, VALIDATOR_ID, trust.start().verify)
        finally:
            trust.close()
        assert vector is not None
        alice = next(e.payload for e in subs if e.payload.repo_namespace == "alice")
        answer = _get_json(api, f"{api_url}/model_submission_details", {
            "repo_namespace": alice.repo_namespace, "repo_name": alice.repo_name,
            "hash": alice.hash, "chat_template_type": alice.config_template,
            "hotkey": alice.hotkey,
        })
        if options.linger_s > 0:
            say(f"   the services keep running for {options.linger_s:.0f}s (--linger)")
            time.sleep(options.linger_s)
    finally:
        for service in reversed(services):
            service.stop()
    board = leaderboard(conn)
    return DemoResult(board, vector, api_url, answer, run, conninfo, evaluation_s)


def _wait_ready(
    services: list[tuple[ServiceProcess, str]], timeout_s: float, say: Callable[[str], None]
) -> None:
    """Poll each service's readiness URL until it answers 200; raise ``ServiceNotReadyError``
    naming the first one that did not within ``timeout_s`` (or ``ServiceDiedError``)."""
    started = time.monotonic()
    waiting = list(services)
    last = {service.name: "no answer yet" for service, _ in services}
    with httpx.Client(timeout=2.0) as client:
        while waiting:
            for service, url in list(waiting):
                service.check()
                try:
                    answer = client.get(url)
                except httpx.HTTPError as exc:
                    last[service.name] = f"no answer ({type(exc).__name__})"
                    continue
                if answer.status_code == 200:
                    waiting.remove((service, url))
                    say(f"   {service.name}: ready after {time.monotonic() - started:.0f}s "
                        f"({url})")
                else:
                    last[service.name] = f"{answer.status_code} {answer.text[:300]}"
            if waiting and time.monotonic() - started > timeout_s:
                service, url = waiting[0]
                raise ServiceNotReadyError(
                    f"{service.name} was not ready after {timeout_s:.0f}s: {url} answered "
                    f"{last[service.name]}; see its log {service.log_path}"
                )
            if waiting:
                time.sleep(0.5)


def _get_json(service: ServiceProcess, url: str, params: dict[str, str]) -> Any:
    try:
        answer = httpx.get(url, params=params, timeout=10)
        answer.raise_for_status()
    except httpx.HTTPError as exc:
        raise ServiceNotReadyError(
            f"{service.name} did not answer {url}: {exc}; see its log {service.log_path}"
        ) from exc
    return answer.json()


def _has_vector(conn: psycopg.Connection, epoch: int) -> bool:
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


def _wait(
    done: Callable[[], bool], services: list[ServiceProcess], timeout_s: float, what: str,
    logs: Path,
) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        for service in services:
            service.check()
        if time.monotonic() > deadline:
            raise DemoTimeoutError(
                f"timed out after {timeout_s:.0f}s waiting for {what}; the logs are in {logs}"
            )
        time.sleep(1.0)
