"""What authentication costs: TLS + SASL on the wire, and the signature on every event.

``.venv/bin/python -m bench.trust [--events N] [--rounds R]`` (``bench/results/trust.json``).
Two brokers of its own, started side by side from the same jars: one PLAINTEXT, one
SASL/SCRAM-SHA-512 over TLS with ACLs (StandardAuthorizer; the bench's client is a user with
only the ACLs a sink and an evaluator need). On each, N score events (40 samples each, the size
an evaluator writes) are produced with the project's ``EventProducer`` and read back whole with
its ``LogReader``, once unsigned and unchecked, once signed by a trusted evaluator key and
checked by the reader (``speechstream.trust.TrustStore.verify``). The four ways run R rounds,
each round in another order (no way always meets a cold broker first); each figure is the median
of its rounds, and its ratio against the plaintext, unsigned way of the same process. Alone, the
per-event cost of signing and of checking.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.report import write_results
from devstack.host import free_port
from devstack.kafka import BrokerSecurity, KafkaNode, SaslUser
from devstack.tls import generate_tls
from schemas.codec import decode, encode
from schemas.envelope import Envelope, new_envelope
from schemas.events import KeysTrusted, SampleResult, ScoreComputed, TrustedKey
from schemas.signing import generate_key
from schemas.trust import TrustSet
from speechstream.kafka.acl import AclContext, GroupPattern, Principal, apply_acls, derive_acls
from speechstream.kafka.admin import create_topics
from speechstream.kafka.producer import EventProducer
from speechstream.kafka.reader import LogReader
from speechstream.settings import DevSettings, KafkaSettings
from speechstream.signer import Signer
from speechstream.trust import TrustStore

RESULTS = Path("bench/results/trust.json")
PREFIX = "bench-trust."
EVALUATOR = "bench-evaluator"


def score(i: int) -> Envelope:
    """A score event of 40 samples, as an evaluator writes one."""
    samples = [SampleResult(index=j, text="The quick brown fox jumps over the lazy dog " * 2,
                            speaker="Laura", ce=0.42 + j / 1000, wer=0.1, score=0.7,
                            transcription="the quick brown fox jumps over the lazy dog " * 2)
               for j in range(40)]
    return new_envelope(ScoreComputed(hash=str(i + 1), status="COMPLETED", total_score=0.7,
                                      samples=samples, evaluator=EVALUATOR,
                                      request_event_id=f"r{i}"), key=str(i + 1),
                        producer="bench")


def per_event(events: list[Envelope], signer: Signer, store: TrustStore) -> dict[str, float]:
    """Microseconds per event: encode+decode alone, signing, checking."""
    raws = [encode(e) for e in events]
    start = time.perf_counter()
    for raw in raws:
        decode(raw)
    decode_us = (time.perf_counter() - start) / len(raws) * 1e6
    start = time.perf_counter()
    signed = [signer.encode(e) for e in events]
    sign_us = (time.perf_counter() - start) / len(events) * 1e6
    topic = store._registry.scores
    start = time.perf_counter()
    for raw in signed:
        assert store.verify(decode(raw), raw, topic) is None
    verify_us = (time.perf_counter() - start) / len(signed) * 1e6 - decode_us
    return {"decode_us": round(decode_us, 1), "sign_us": round(sign_us, 1),
            "verify_us": round(verify_us, 1), "event_bytes": len(signed[0])}


WAYS = (("plaintext", False, False), ("plaintext signed", False, True),
        ("sasl_ssl", True, False), ("sasl_ssl signed", True, True))


def round_trip(kafka: KafkaSettings, events: list[Envelope], signer: Signer | None,
               store: TrustStore | None, name: str) -> dict[str, float]:
    """Produce ``events`` to the scores topic and read them back whole: events/s of each."""
    topic = kafka.topics.scores
    start = time.perf_counter()
    with EventProducer(kafka, signer=signer) as producer:
        for env in events:
            producer.send(topic, env)
        producer.flush(120)
    produce_s = time.perf_counter() - start
    seen = 0

    def take(_env: Envelope) -> None:
        nonlocal seen
        seen += 1

    reader = LogReader(kafka, [topic], take, name=name,
                       verify=store.verify if store is not None else None)
    start = time.perf_counter()
    try:
        reader.start(300)
    finally:
        reader.close()
    read_s = time.perf_counter() - start
    if seen != len(events):
        raise RuntimeError(f"{name}: read {seen} of {len(events)} events "
                           f"({reader.undecodable} refused)")
    return {"produce_per_s": round(len(events) / produce_s), "read_per_s": round(seen / read_s)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the bench and write its results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of the four ways, each round in another order; the "
                        "median of each is reported")
    args = parser.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="speechstream-bench-trust-"))
    _, root = generate_key()
    private, public = generate_key()
    signer = Signer(private, public)
    trusted = TrustSet.of(KeysTrusted(version=1, keys=[
        TrustedKey(key=public, role="evaluator", name=EVALUATOR)]))
    events = [score(i) for i in range(args.events)]
    security = BrokerSecurity(users=(SaslUser("bench"),), tls=generate_tls(base / "tls"))
    ports: list[int] = []
    while len(ports) < 4:
        port = free_port()
        ports += [] if port in ports else [port]
    plain = KafkaNode(base / "plain", DevSettings().cache_dir, ports[0], ports[1], heap="512m")
    secure = KafkaNode(base / "secure", DevSettings().cache_dir, ports[2], ports[3],
                       heap="512m", security=security)
    result: dict[str, Any] = {"events": args.events, "rounds": args.rounds}
    try:
        for node in (plain, secure):
            node.start()
        for node in (plain, secure):
            node.wait_ready(120)
        result["per_event"] = per_event(events[:1000], signer, TrustStore.fixed(root, trusted))
        samples: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in WAYS}
        for r in range(args.rounds):
            # Each round in another order, so that no way always runs first (a cold broker).
            order = list(enumerate(WAYS))
            order = order[r % len(order):] + order[:r % len(order)]
            for i, (name, secured, signed) in order:
                prefix = f"{PREFIX}{r}.{i}."
                env = {"KAFKA_BOOTSTRAP_SERVERS":
                       (secure if secured else plain).bootstrap_servers,
                       "SPEECHSTREAM_TOPIC_PREFIX": prefix}
                group = f"bench-trust-{r}-{i}"
                if secured:
                    admin = KafkaSettings(**env, **security.client_environment())
                    kafka = KafkaSettings(**env, **security.client_environment(
                        security.user("bench")))
                    create_topics(admin)
                    context = AclContext(topic_prefix=prefix, groups={
                        "sink": (GroupPattern(group),)})
                    apply_acls(admin, derive_acls([Principal("evaluator", "User:bench"),
                                                   Principal("sink", "User:bench")], context))
                else:
                    kafka = KafkaSettings(**env)
                    create_topics(kafka)
                store = (TrustStore.fixed(root, trusted, registry=kafka.topics)
                         if signed else None)
                samples[name].append(round_trip(kafka, events, signer if signed else None,
                                                store, group))
        runs = {name: {key: statistics.median(s[key] for s in got)
                       for key in ("produce_per_s", "read_per_s")}
                for name, got in samples.items()}
        first = runs["plaintext"]
        for run in runs.values():
            run["produce_ratio"] = round(run["produce_per_s"] / first["produce_per_s"], 3)
            run["read_ratio"] = round(run["read_per_s"] / first["read_per_s"], 3)
        result["runs"] = runs
    finally:
        for node in (plain, secure):
            node.stop()
        shutil.rmtree(base, ignore_errors=True)
    return write_results(result, RESULTS)


if __name__ == "__main__":
    main()
