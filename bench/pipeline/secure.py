"""The pipeline benchmark's intake and sink, three ways side by side in one run: a PLAINTEXT
broker with nothing checked, the same broker with every event signed and checked, and a broker
with SASL/SCRAM over TLS and ACLs where each service logs in as its own principal, signed and
checked.

Run: ``.venv/bin/python -m bench.pipeline.secure [--miners 1000 --submissions 10000]`` (starts
the local stack if needed, and a secured broker of its own). Writes
``bench/results/pipeline-secure.json``: per way, the submissions/s one intake worker validates
(``validated_per_s``, from the requests' broker timestamps, first to last), its CPU time per
submission, and the rows/s the sink writes draining the backlog (``sink_rows_per_s``); and each
as a ratio to the plaintext, unchecked way.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench import data
from bench.database import fresh_database, sink_rows_per_s
from bench.kafka import produce, rate_from_timestamps, wait_count
from bench.report import write_results
from bench.streams import cpu_seconds
from devstack.host import free_port
from devstack.kafka import BrokerSecurity, KafkaNode, SaslUser
from devstack.processes import ServiceProcess
from devstack.stack import DevStack
from devstack.tls import generate_tls
from producers.trust import publish_trusted, service_keys
from schemas.fields import MAX_UIDS
from schemas.topics import ROLES
from speechstream.kafka.acl import (
    AclContext,
    GroupPattern,
    apply_acls,
    default_principals,
    derive_acls,
)
from speechstream.kafka.admin import create_topics
from speechstream.settings import DevSettings, KafkaSettings
from speechstream.trust import TRUST_READER
from streams.chain import CONSUMER_NAME as CHAIN_READER
from streams.deadletter import CONSUMER_NAME as STREAMS_NAME
from streams.worker import ACTIVE_VERSION_READER

RESULTS = Path("bench/results/pipeline-secure.json")
WAYS = (("plaintext", False, False), ("plaintext signed", False, True),
        ("sasl_ssl signed", True, True))


def _ports(n: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        port = free_port()
        ports += [] if port in ports else [port]
    return ports


def _trust(directory: Path, kafka: KafkaSettings) -> dict[str, str]:
    """An operator root, the intake's and the sink's keys, their set published; the env."""
    keys = service_keys(directory, {"intake": "intake", "sink": "sink"}, fresh=True)
    publish_trusted(kafka, keys.operator, keys.entries, version=1)
    env = {**keys.environment(), "SPEECHSTREAM_TRUST_INSECURE": "false"}
    return env


def _acls(admin: KafkaSettings, prefix: str) -> None:
    """The ACLs of every role under ``prefix`` (the intake's and the sink's groups)."""
    trust = GroupPattern(TRUST_READER)
    context = AclContext(topic_prefix=prefix, groups={
        "intake": (GroupPattern(f"{prefix}speechstream-intake"), GroupPattern(CHAIN_READER),
                   GroupPattern(ACTIVE_VERSION_READER), GroupPattern(STREAMS_NAME), trust),
        "sink": (GroupPattern(f"{prefix}sink", "prefixed"), trust),
        "operator": (trust,),
    })
    apply_acls(admin, derive_acls(default_principals(), context))


def _one_way(name: str, admin: KafkaSettings, security: BrokerSecurity | None, signed: bool,
             database_url: str, keys: list, per_miner: int, work: Path) -> dict[str, Any]:
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    kafka = admin.model_copy(update={"topic_prefix": prefix})
    create_topics(kafka)
    if security is not None:
        _acls(kafka, prefix)
    conninfo = fresh_database(database_url, f"bench_secure_{prefix.strip('.')}")
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers, "SPEECHSTREAM_TOPIC_PREFIX":
           prefix, "DATABASE_URL": conninfo, "SPEECHSTREAM_STREAMS_WEB_ENABLED": "false",
           "SPEECHSTREAM_STREAMS_DATA_DIR": str(work / f"{prefix}streams"),
           "SPEECHSTREAM_SINK_GROUP_ID": f"{prefix}sink",
           "SPEECHSTREAM_TRUST_INSECURE": "true",
           # More miners than a subnet's 256 uids: the intake takes the largest subnet.
           "SPEECHSTREAM_STREAMS_SUBNET_SIZE": str(MAX_UIDS)}
    if signed:
        env.update(_trust(work / f"{prefix}keys", kafka))

    def role_env(role: str) -> dict[str, str]:
        if security is None:
            return {}
        return security.client_environment(security.user(role))

    logs = work / f"{prefix}logs"
    worker = ServiceProcess("streams", ["streams", "worker"], logs / "streams.log",
                            {**env, **role_env("intake")}).start()
    sink = ServiceProcess("sink", ["sink", "run"], logs / "sink.log", {**env, **role_env("sink")})
    try:
        topics = kafka.topics
        produce(kafka, topics.registrations, data.registrations(keys))
        wait_count(kafka, topics.miners, len(keys), 300, [worker])
        time.sleep(3)  # the miners agent updates its table just after the topic
        subs = list(data.submissions(keys, per_miner))
        assert worker.process is not None
        cpu = cpu_seconds(worker.process.pid)
        produce(kafka, topics.submissions, subs)
        wait_count(kafka, topics.evaluation_requests, len(subs), 900, [worker])
        result: dict[str, Any] = {
            "validated_per_s": round(rate_from_timestamps(kafka, topics.evaluation_requests,
                                                          len(subs))),
            "worker_cpu_us_per_submission": round(
                (cpu_seconds(worker.process.pid) - cpu) * 1e6 / len(subs)),
        }
        sink.start()
        expected = len(keys) + 2 * len(subs)
        deadline = time.monotonic() + 600
        while sink_rows_per_s(conninfo)[0] < expected:
            sink.check()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name}: the sink did not catch up in 600 s")
            time.sleep(0.5)
        result["sink_rows_per_s"] = round(sink_rows_per_s(conninfo)[1])
        for log in logs.glob("*.log"):
            if "untrusted" in log.read_text() or "AUTHORIZATION_FAILED" in log.read_text():
                raise RuntimeError(f"{name}: {log.name} refused something on the honest path")
        return result
    finally:
        worker.stop()
        sink.stop()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the three ways and write their figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--miners", type=int, default=1_000)
    parser.add_argument("--submissions", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    per_miner = max(1, args.submissions // args.miners)
    up = DevStack(DevSettings()).up(KafkaSettings())
    work = Path(tempfile.mkdtemp(prefix="speechstream-bench-secure-"))
    security = BrokerSecurity(users=tuple(SaslUser(role) for role in ROLES),
                              tls=generate_tls(work / "tls"))
    port, controller = _ports(2)
    node = KafkaNode(work / "kafka", DevSettings().cache_dir, port, controller, heap="1g",
                     security=security)
    keys = data.miners(args.miners)
    result: dict[str, Any] = {"machine": f"{platform.machine()}, {platform.system()}, 2 cores",
                              "miners": args.miners, "submissions": per_miner * args.miners}
    try:
        node.start()
        node.wait_ready(120)
        plain = KafkaSettings(KAFKA_BOOTSTRAP_SERVERS=up.bootstrap_servers)
        secured = KafkaSettings(KAFKA_BOOTSTRAP_SERVERS=node.bootstrap_servers,
                                **security.client_environment())
        ways: dict[str, dict[str, Any]] = {}
        for name, sasl, signed in WAYS:
            ways[name] = _one_way(name, secured if sasl else plain, security if sasl else None,
                                  signed, up.database_url, keys, per_miner, work)
        first = ways["plaintext"]
        for way in ways.values():
            for key in ("validated_per_s", "sink_rows_per_s"):
                way[f"{key.removesuffix('_per_s')}_ratio"] = round(way[key] / first[key], 3)
        result["ways"] = ways
    finally:
        node.stop()
        shutil.rmtree(work, ignore_errors=True)
    return write_results(result, args.out)


if __name__ == "__main__":
    main()
