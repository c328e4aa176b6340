"""The project's container images, built on this machine (``speechstream dev images``).

- ``kafka``, ``speechstream/kafka:4.1.1``: the broker (KRaft), Debian's JRE and Maven
  Central's jars;
- ``postgres``, ``speechstream/postgres:15``: Debian's PostgreSQL 15;
- ``services``, ``speechstream:<version>``: the intake worker, the sink, the validator, the
  API and the operator commands, without torch;
- ``evaluator``, ``speechstream-evaluator:<version>``: the evaluator and the auditor (torch);
- ``parler``, ``speechstream-evaluator-parler:<version>``: the evaluator image with the
  Parler-TTS environment (``/opt/parler``), built on it and linking its torch;
- ``prometheus``, ``speechstream/prometheus:2``: Debian's Prometheus with the deployment's
  scrape configuration and alert rules (``docker/prometheus``), for the compose stack.

Every Dockerfile takes its base as the build argument ``BASE_IMAGE``: the official image
(``debian:bookworm-slim``, ``python:3.11-slim-bookworm``) where it is present or can be pulled,
otherwise a Debian base built here from Debian's packages (``mmdebstrap --variant=minbase``,
then ``docker import``, once: :data:`LOCAL_BASE`). The Kafka image's jars are the ones the dev
stack fetches on the host (``speechstream dev fetch``). pip reaches PyPI with the host's CA
bundle given to the build as the secret ``ca`` (BuildKit), which no image keeps. Builds reuse
Docker's layer cache and pip's cache (a BuildKit cache mount): a second build of unchanged
sources takes seconds.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from devstack.exceptions import CommandFailedError, MissingToolError
from devstack.host import Tool, require_tool, run_command
from devstack.kafka import KAFKA_VERSION, fetch_jars, render_log4j2

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
LOCAL_BASE = "speechstream/debian:bookworm"
OFFICIAL_DEBIAN = "debian:bookworm-slim"
OFFICIAL_PYTHON = "python:3.11-slim-bookworm"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
MMDEBSTRAP = Tool("mmdebstrap", "mmdebstrap")
DOCKER = Tool("docker", "docker.io")


def project_version() -> str:
    """The installed project's version: the services' images are tagged with it."""
    try:
        return importlib.metadata.version("speechstream")
    except importlib.metadata.PackageNotFoundError:
        return "dev"


@dataclass(frozen=True)
class Image:
    """One image: its tag, its Dockerfile and whether it builds on a Python base."""

    key: str
    tag: str
    dockerfile: str
    python_base: bool
    build_args: tuple[tuple[str, str], ...] = ()
    torch: bool = False
    builds_on: str | None = None
    """The key of the project's image it builds on (its ``BASE_IMAGE``), if any."""


def images() -> tuple[Image, ...]:
    """Every image, in build order."""
    version = project_version()
    return (
        Image("kafka", f"speechstream/kafka:{KAFKA_VERSION}", "docker/kafka.Dockerfile", False),
        Image("postgres", "speechstream/postgres:15", "docker/postgres.Dockerfile", False),
        Image("services", f"speechstream:{version}", "docker/Dockerfile", True),
        Image("evaluator", f"speechstream-evaluator:{version}", "docker/Dockerfile", True,
              (("EXTRAS", "evaluator"),), torch=True),
        Image("parler", f"speechstream-evaluator-parler:{version}",
              "docker/evaluator-parler.Dockerfile", False, builds_on="evaluator"),
        Image("prometheus", "speechstream/prometheus:2", "docker/prometheus.Dockerfile", False),
    )


@dataclass(frozen=True)
class Built:
    """An image as built: how long the build took and its size."""

    image: Image
    base: str
    seconds: float
    size_bytes: int


class Docker:
    """The Docker CLI, as one that builds with BuildKit: ``docker buildx build`` where the
    plugin is there, else a client older than 23 with ``DOCKER_BUILDKIT=1`` (Debian's
    ``docker.io`` ships such a client at ``/usr/bin/docker``)."""

    def __init__(self, cli: str | None = None) -> None:
        candidates = [c for c in (cli, os.environ.get("SPEECHSTREAM_DOCKER"),
                                  shutil.which(DOCKER.name), "/usr/bin/docker") if c]
        for candidate in candidates:
            if not Path(candidate).exists() and shutil.which(candidate) is None:
                continue
            if _succeeds([candidate, "buildx", "version"]):
                self.cli, self.build_argv, self.env = candidate, [candidate, "buildx", "build",
                                                                  "--load"], {}
                return
            if _client_major(candidate) < 23:
                self.cli, self.build_argv = candidate, [candidate, "build"]
                self.env = {"DOCKER_BUILDKIT": "1"}
                return
        raise MissingToolError(
            "no Docker client that builds with BuildKit: install the buildx plugin, or "
            f"Debian's docker.io (apt-get install docker.io); tried {', '.join(candidates)}")

    def run(self, *args: str, what: str, timeout: float = 600) -> str:
        """``docker <args>``; its stdout, or :class:`CommandFailedError` with its output."""
        return run_command([self.cli, *args], what=what, timeout=timeout)

    def answers(self) -> bool:
        """Whether an engine answers."""
        return _succeeds([self.cli, "info", "--format", "{{.ServerVersion}}"])

    def has_image(self, tag: str) -> bool:
        return _succeeds([self.cli, "image", "inspect", tag])

    def can_pull(self, tag: str) -> bool:
        return _succeeds([self.cli, "pull", "-q", tag], timeout=120)

    def size(self, tag: str) -> int:
        return int(self.run("image", "inspect", "--format", "{{.Size}}", tag,
                            what=f"the size of {tag}").strip())

    def build(self, dockerfile: Path, context: Path, tag: str,
              build_args: Sequence[tuple[str, str]]) -> None:
        """Build ``tag``; its output goes to this process's stderr as it comes."""
        argv = [*self.build_argv, "--progress=plain", "-f", str(dockerfile), "-t", tag]
        for name, value in build_args:
            argv += ["--build-arg", f"{name}={value}"]
        if CA_BUNDLE.exists():
            argv += ["--secret", f"id=ca,src={CA_BUNDLE}"]
        argv.append(str(context))
        tail: deque[str] = deque(maxlen=60)
        with subprocess.Popen(argv, env={**os.environ, **self.env}, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                tail.append(line)
                sys.stderr.write(line)
        if proc.returncode != 0:
            raise CommandFailedError(f"building {tag} failed (exit {proc.returncode}):\n"
                                     f"{''.join(tail)}")


def _succeeds(argv: Sequence[str], timeout: float = 60) -> bool:
    try:
        return subprocess.run(argv, capture_output=True, timeout=timeout,
                              check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _client_major(cli: str) -> int:
    try:
        out = subprocess.run([cli, "version", "--format", "{{.Client.Version}}"],
                             capture_output=True, text=True, timeout=30, check=False).stdout
        return int(out.strip().split(".")[0])
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return 10**6


def local_base(docker: Docker, *, install: bool) -> str:
    """:data:`LOCAL_BASE`, built from Debian's packages the first time."""
    if docker.has_image(LOCAL_BASE):
        return LOCAL_BASE
    mmdebstrap = require_tool(MMDEBSTRAP, install=install)
    with tempfile.TemporaryDirectory(prefix="speechstream-base-") as tmp:
        tar = Path(tmp) / "base.tar"
        log.info("building %s with mmdebstrap", LOCAL_BASE)
        run_command([mmdebstrap, "--quiet", "--variant=minbase", "bookworm", str(tar)],
                    what="mmdebstrap of Debian bookworm", timeout=900)
        docker.run("import", str(tar), LOCAL_BASE, what=f"docker import of {LOCAL_BASE}")
    return LOCAL_BASE


def base_for(docker: Docker, image: Image, chosen: str | None, *, install: bool) -> str:
    """The base ``image`` builds on: ``chosen``, else the official one where present or
    pullable, else :func:`local_base`."""
    if chosen:
        return chosen
    official = OFFICIAL_PYTHON if image.python_base else OFFICIAL_DEBIAN
    if docker.has_image(official) or docker.can_pull(official):
        return official
    return local_base(docker, install=install)


def torch_index_reachable(url: str = CPU_TORCH_INDEX) -> bool:
    """Whether torch's CPU wheel index answers (from here)."""
    try:
        with urllib.request.urlopen(url + "/", timeout=10):
            return True
    except OSError:
        return False


def kafka_context(cache_dir: Path, *, install: bool) -> Path:
    """The Kafka image's build context under ``build/images/kafka``: the jars, the dev
    stack's log4j2 configuration and ``docker/kafka``."""
    libs = fetch_jars(cache_dir, install=install)
    context = ROOT / "build" / "images" / "kafka"
    shutil.rmtree(context, ignore_errors=True)
    (context / "docker").mkdir(parents=True)
    shutil.copytree(libs, context / "libs")
    shutil.copytree(ROOT / "docker" / "kafka", context / "docker" / "kafka")
    (context / "log4j2.yaml").write_text(render_log4j2())
    return context


def build_images(keys: Sequence[str] | None = None, *, base_image: str | None = None,
                 torch_index: str | None = None, cache_dir: Path, install: bool = True,
                 docker: Docker | None = None) -> list[Built]:
    """Build the images named by ``keys`` (all when None), in order; return what was built.

    ``torch_index`` is the evaluator's torch wheel index: None picks the CPU index where it
    answers and PyPI's wheels (CUDA) where it does not; "" is PyPI's."""
    docker = docker or Docker()
    if not docker.answers():
        raise MissingToolError("no Docker engine answers (start dockerd as root, or set "
                               "DOCKER_HOST)")
    known = {image.key: image for image in images()}
    unknown = sorted(set(keys or ()) - set(known))
    if unknown:
        raise ValueError(f"no image {', '.join(unknown)}; the images: {', '.join(known)}")
    built = []
    for image in images():
        if keys and image.key not in keys:
            continue
        if image.builds_on is not None:
            base = known[image.builds_on].tag
            if not docker.has_image(base):
                raise MissingToolError(f"{image.tag} builds on {base}, which is not built: "
                                       f"build {image.builds_on!r} first")
        else:
            base = base_for(docker, image, base_image, install=install)
        args = [("BASE_IMAGE", base), *image.build_args]
        if image.torch:
            index = torch_index
            if index is None:
                index = CPU_TORCH_INDEX if torch_index_reachable() else ""
            args.append(("TORCH_INDEX", index))
        context = kafka_context(cache_dir, install=install) if image.key == "kafka" else ROOT
        started = time.monotonic()
        log.info("building %s on %s", image.tag, base)
        docker.build(ROOT / image.dockerfile, context, image.tag, args)
        built.append(Built(image, base, time.monotonic() - started, docker.size(image.tag)))
    return built
