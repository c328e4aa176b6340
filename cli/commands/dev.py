"""`speechstream dev up | down | status | fetch | dashboard | images`: a local Kafka broker,
PostgreSQL and (optionally) Prometheus for development, the deployment's Grafana dashboard and
the project's container images."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from devstack.dashboard import queries as dashboard_queries
from devstack.dashboard import write as write_dashboard
from devstack.images import build_images, images
from devstack.kafka import KAFKA_VERSION, fetch_jars
from devstack.stack import DevStack, StackStatus
from devstack.trust import dev_trust
from speechstream.settings import DevSettings, KafkaSettings

UP_HELP = """\
Start a single-node Apache Kafka broker (KRaft) and a PostgreSQL cluster on 127.0.0.1, create
the registry's topics and apply the database migrations. Idempotent: what already runs is left
alone. The last two lines are KAFKA_BOOTSTRAP_SERVERS=... and DATABASE_URL=..., so
  eval $(speechstream dev up | grep =)
points every command of this shell at the stack. When KAFKA_BOOTSTRAP_SERVERS or DATABASE_URL
is already set, that service is used as it is and nothing local is started for it.
PostgreSQL trusts every connection from 127.0.0.1 (no password): a development stack only.
With --prometheus it also runs Debian's Prometheus on 127.0.0.1 (SPEECHSTREAM_DEV_PROMETHEUS_PORT,
39090), which evaluates the alert rules of docker/prometheus/rules.yml and scrapes the services
listed in <state dir>/prometheus/targets/*.json: `speechstream demo` writes demo.json for the
services of its run; add a file of your own for others (docs/operations.md)."""

IMAGES_HELP = """\
Build the project's images with BuildKit, in this order: speechstream/kafka (Apache Kafka in
KRaft mode, the jars the dev stack fetches), speechstream/postgres (Debian's PostgreSQL 15),
speechstream (the services without torch), speechstream-evaluator (the evaluator and the
auditor, with torch), speechstream-evaluator-parler (that image with the Parler-TTS
environment, linking its torch) and speechstream/prometheus (Debian's, with the alert rules).
The others build on the official base image where it is present or can be pulled, else on
speechstream/debian:bookworm, built once here with mmdebstrap from Debian's packages. pip
reaches PyPI with /etc/ssl/certs/ca-certificates.crt as a build secret, which no image keeps.
A build of unchanged sources reuses Docker's layers and pip's cache."""

ENV_HELP = """\
settings (environment): SPEECHSTREAM_DEV_STATE_DIR (default .speechstream/dev),
SPEECHSTREAM_DEV_CACHE_DIR (Kafka jars, default ~/.cache/speechstream),
SPEECHSTREAM_DEV_KAFKA_PORT (39092), SPEECHSTREAM_DEV_KAFKA_CONTROLLER_PORT (39093),
SPEECHSTREAM_DEV_POSTGRES_PORT (55432), SPEECHSTREAM_DEV_POSTGRES_BIN_DIR,
SPEECHSTREAM_DEV_KAFKA_HEAP (1g), SPEECHSTREAM_DEV_PROMETHEUS (false),
SPEECHSTREAM_DEV_PROMETHEUS_PORT (39090)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``dev`` command group."""
    dev = subparsers.add_parser(
        "dev",
        help="run a local Kafka broker and PostgreSQL (up, down, status)",
        description="A local development stack: Apache Kafka (KRaft) and PostgreSQL.",
        epilog=ENV_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = dev.add_subparsers(dest="dev_command", required=True,
                             metavar="{up,down,status,fetch,dashboard,images}")

    up = sub.add_parser(
        "up", help="start the stack (idempotent) and print its two environment variables",
        description=UP_HELP, epilog=ENV_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(up)
    up.add_argument(
        "--no-install", dest="install", action="store_false",
        help="never apt-get install a missing java, mvn, postgresql or prometheus; just name "
        "the command",
    )
    up.add_argument(
        "--prometheus", action="store_true", default=None,
        help="also run Debian's Prometheus with the alert rules, scraping the services named "
        "in <state dir>/prometheus/targets (default: $SPEECHSTREAM_DEV_PROMETHEUS)",
    )
    up.set_defaults(func=_up)

    down = sub.add_parser(
        "down", help="stop what `dev up` started in this state dir (data is kept)",
        description="Stop the broker, PostgreSQL and Prometheus that `dev up` started in this "
        "state dir, "
        "found by their pid files. Nothing else is touched; data stays for the next `up`.",
    )
    _common(down)
    down.set_defaults(func=_down)

    fetch = sub.add_parser(
        "fetch", help="download the pinned Kafka release's jars into the cache (once)",
        description="Fetch the jars of Apache Kafka (the pinned release) and its logging from "
        "Maven Central with mvn into $SPEECHSTREAM_DEV_CACHE_DIR; later calls reuse them.",
    )
    fetch.add_argument(
        "--no-install", dest="install", action="store_false",
        help="never apt-get install a missing mvn; just name the command",
    )
    fetch.set_defaults(func=_fetch)

    dashboard = sub.add_parser(
        "dashboard", help="write the Grafana dashboard (docker/grafana/speechstream.json)",
        description="Write the deployment's Grafana dashboard, built with Grafana's Foundation "
        "SDK from devstack/dashboard.py, as Grafana's JSON model. Import it in Grafana and "
        "pick the Prometheus that scrapes the services (its `datasource` variable).",
    )
    dashboard.add_argument("--out", type=Path, default=None,
                           help="where to write it (default: docker/grafana/speechstream.json)")
    dashboard.set_defaults(func=_dashboard)

    build = sub.add_parser(
        "images", help="build the container images (docker/) on this machine's Docker engine",
        description=IMAGES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    build.add_argument("keys", nargs="*", metavar="IMAGE",
                       help=f"which to build (default: all): {', '.join(i.key for i in images())}")
    build.add_argument("--base-image", default=None,
                       help="build every image on this base instead of the official one or "
                       "the local Debian base")
    build.add_argument("--torch-index", default=None,
                       help="the evaluator's torch wheel index ('' for PyPI's CUDA wheels; "
                       "default: the CPU index where it answers, else PyPI)")
    build.add_argument("--no-install", dest="install", action="store_false",
                       help="never apt-get install a missing mmdebstrap or mvn")
    build.set_defaults(func=_images)

    status = sub.add_parser(
        "status", help="broker version, topics with partitions, database and migrations",
        description="Show the broker's version, its topics with partition counts, whether the "
        "database answers, and its applied migrations. Exit status 1 when either is down.",
    )
    _common(status)
    status.set_defaults(func=_status)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir", type=Path, default=None,
        help="where data, logs and pid files live (default: $SPEECHSTREAM_DEV_STATE_DIR or "
        ".speechstream/dev)",
    )


def _settings(args: argparse.Namespace) -> DevSettings:
    settings = DevSettings()
    if args.state_dir is not None:
        settings = settings.model_copy(update={"state_dir": args.state_dir})
    if getattr(args, "prometheus", None):
        settings = settings.model_copy(update={"prometheus": True})
    return settings


def _up(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    stack = DevStack(_settings(args), install=args.install)
    result = stack.up(KafkaSettings())
    for service in result.services:
        print(service.describe())
    print(f"topics: {len(result.topics_created)} created")
    for name in result.topics_created:
        print(f"  created {name}")
    print(f"migrations: {len(result.migrations_applied)} applied")
    for version in result.migrations_applied:
        print(f"  applied {version}")
    for line in result.env_lines():
        print(line)
    kafka = KafkaSettings(**{"KAFKA_BOOTSTRAP_SERVERS": result.bootstrap_servers,
                             "SPEECHSTREAM_TOPIC_PREFIX": KafkaSettings().topic_prefix,
                             **dict(result.client_env)})
    trust_dir = stack.state_dir / "trust"
    lines, version = dev_trust(kafka, trust_dir)
    print(f"trust: the operator's key and a key per service in {trust_dir}, trusted set "
          f"version {version}")
    for line in lines:
        print(line)
    return 0


def _down(args: argparse.Namespace) -> int:
    services = DevStack(_settings(args), install=False).down()
    for service in services:
        print(service.describe())
    return 0


def _fetch(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    libs = fetch_jars(DevSettings().cache_dir.expanduser(), install=args.install)
    print(f"Apache Kafka {KAFKA_VERSION} jars in {libs}")
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    path = write_dashboard(args.out) if args.out is not None else write_dashboard()
    print(f"dashboard: {path} ({len(dashboard_queries())} queries)")
    return 0


def _images(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    built = build_images(args.keys or None, base_image=args.base_image,
                         torch_index=args.torch_index, install=args.install,
                         cache_dir=DevSettings().cache_dir.expanduser())
    for b in built:
        print(f"{b.image.tag:<34} {b.size_bytes / 1e6:>7.0f} MB  {b.seconds:>6.1f} s  "
              f"on {b.base}")
    return 0


def _status(args: argparse.Namespace) -> int:
    status = DevStack(_settings(args), install=False).status(KafkaSettings())
    print(format_status(status))
    return 0 if status.healthy else 1


def format_status(status: StackStatus) -> str:
    """The human report ``dev status`` prints."""
    k, p = status.kafka, status.postgres
    lines = []
    pid = f", pid {k.pid}" if k.pid else ""
    if k.reachable:
        version = k.version or "version unknown (external broker)"
        lines.append(
            f"kafka: up ({k.source}{pid}) at {k.bootstrap_servers}, Apache Kafka {version}, "
            f"cluster {k.cluster_id}, {k.brokers} broker(s)"
        )
        if k.error:
            lines.append(f"  error: {k.error}")
        lines.append(f"  topics: {len(k.topics)}")
        width = max((len(t.name) for t in k.topics), default=0)
        for topic in k.topics:
            note = "" if topic.matches_registry else f" (registry says {topic.spec.partitions})"
            lines.append(f"    {topic.name:<{width}}  {topic.partitions} partition(s){note}")
    else:
        lines.append(f"kafka: DOWN ({k.source}{pid}) at {k.bootstrap_servers}: {k.error}")
    pid = f", pid {p.pid}" if p.pid else ""
    if p.reachable:
        lines.append(
            f"postgres: up ({p.source}{pid}) at {p.database_url}, PostgreSQL {p.server_version}"
        )
        if p.migrations is None:
            lines.append("  migrations: unknown (sinks.migrate cannot list them)")
        else:
            lines.append(f"  migrations: {len(p.migrations)} applied")
            lines.extend(f"    {m}" for m in p.migrations)
    else:
        lines.append(f"postgres: DOWN ({p.source}{pid}) at {p.database_url}: {p.error}")
    m = status.prometheus
    if m is None:
        lines.append("prometheus: not running (dev up --prometheus starts it)")
    else:
        state = "up" if m.ready else "NOT READY"
        files = ", ".join(m.target_files) or "none yet"
        lines.append(f"prometheus: {state} (local, pid {m.pid}) at {m.url}, target files: {files}")
    return "\n".join(lines)
