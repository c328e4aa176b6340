"""The container images' build logic and the broker image's start script (no engine needed)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from devstack import images
from devstack.images import CPU_TORCH_INDEX, LOCAL_BASE, OFFICIAL_DEBIAN, OFFICIAL_PYTHON

RUN_SH = Path(images.ROOT) / "docker" / "kafka" / "run.sh"


def _run_kafka_script(tmp_path: Path, env: dict[str, str]) -> tuple[str, list[str]]:
    """Run docker/kafka/run.sh with a ``java`` that records its arguments."""
    home, bin_dir = tmp_path / "kafka", tmp_path / "bin"
    (home / "config").mkdir(parents=True)
    bin_dir.mkdir()
    calls = tmp_path / "java-calls"
    java = bin_dir / "java"
    java.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    java.chmod(0o755)
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
    subprocess.run(["sh", str(RUN_SH)], check=True, timeout=30, env={
        **clean, "PATH": f"{bin_dir}:{os.environ['PATH']}", "KAFKA_HOME": str(home),
        "KAFKA_HEAP_OPTS": "-Xmx256m", "KAFKA_LOG_DIRS": str(data), **env})
    return (home / "config" / "server.properties").read_text(), calls.read_text().splitlines()


def test_the_broker_image_writes_its_properties_as_the_official_image_does(
    tmp_path: Path,
) -> None:
    props, calls = _run_kafka_script(tmp_path, {
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "KAFKA_LISTENERS": "PLAINTEXT://0.0.0.0:9092,CONTROLLER://0.0.0.0:9093",
        "KAFKA_SASL_ENABLED__MECHANISMS": "SCRAM-SHA-512",
        "KAFKA_LISTENER_NAME_X_SCRAM___SHA___512_SASL_JAAS_CONFIG": "a=b c=d",
        "CLUSTER_ID": "abcdefghijklmnopqrstuv",
    })
    lines = set(props.splitlines())
    assert {"process.roles=broker,controller",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "listeners=PLAINTEXT://0.0.0.0:9092,CONTROLLER://0.0.0.0:9093",
            "sasl.enabled_mechanisms=SCRAM-SHA-512",
            "listener.name.x.scram-sha-512.sasl.jaas.config=a=b c=d",
            f"log.dirs={tmp_path / 'data'}"} <= lines
    assert not any(line.startswith(("heap.opts", "home=")) for line in lines)
    (fmt, start) = calls
    assert "kafka.tools.StorageTool format -t abcdefghijklmnopqrstuv" in fmt
    assert start.startswith("-Xmx256m ") and start.endswith(
        f"kafka.Kafka {tmp_path / 'kafka' / 'config' / 'server.properties'}")


def test_the_broker_image_formats_its_data_once(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "meta.properties").write_text("formatted\n")
    _, calls = _run_kafka_script(tmp_path, {"KAFKA_NODE_ID": "1"})
    assert len(calls) == 1 and "kafka.Kafka" in calls[0]


class FakeDocker:
    def __init__(self, present: set[str], pullable: set[str] = frozenset()) -> None:
        self.present, self.pullable = set(present), set(pullable)
        self.builds: list[tuple[str, dict[str, str]]] = []

    def answers(self) -> bool:
        return True

    def has_image(self, tag: str) -> bool:
        return tag in self.present

    def can_pull(self, tag: str) -> bool:
        return tag in self.pullable

    def size(self, tag: str) -> int:
        return 1

    def build(self, dockerfile, context, tag, build_args) -> None:
        self.builds.append((tag, dict(build_args)))
        self.present.add(tag)


def test_each_image_builds_on_the_official_base_where_there_is_one_else_the_local_one(
    tmp_path: Path,
) -> None:
    evaluator, postgres = images.images()[3], images.images()[1]
    docker = FakeDocker(present={LOCAL_BASE}, pullable={OFFICIAL_PYTHON})
    assert images.base_for(docker, evaluator, None, install=False) == OFFICIAL_PYTHON
    assert images.base_for(docker, postgres, None, install=False) == LOCAL_BASE
    docker.pullable.add(OFFICIAL_DEBIAN)
    assert images.base_for(docker, postgres, None, install=False) == OFFICIAL_DEBIAN
    assert images.base_for(docker, postgres, "my/base:1", install=False) == "my/base:1"


def test_the_evaluator_image_takes_torch_from_the_cpu_index_only_where_it_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    for reachable, index in ((True, CPU_TORCH_INDEX), (False, "")):
        monkeypatch.setattr(images, "torch_index_reachable", lambda reachable=reachable: reachable)
        docker = FakeDocker(present={LOCAL_BASE})
        built = images.build_images(["services", "evaluator"], cache_dir=tmp_path,
                                    install=False, docker=docker)  # type: ignore[arg-type]
        assert [b.image.key for b in built] == ["services", "evaluator"]
        (services, services_args), (evaluator, evaluator_args) = docker.builds
        assert services_args == {"BASE_IMAGE": LOCAL_BASE}
        assert evaluator_args == {"BASE_IMAGE": LOCAL_BASE, "EXTRAS": "evaluator",
                                  "TORCH_INDEX": index}
    with pytest.raises(ValueError, match="no image gpu"):
        images.build_images(["gpu"], cache_dir=tmp_path, install=False,
                            docker=FakeDocker(set()))  # type: ignore[arg-type]


def test_the_parler_image_builds_on_the_evaluator_image_and_not_without_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(images, "torch_index_reachable", lambda: False)
    with pytest.raises(images.MissingToolError, match="build 'evaluator' first"):
        images.build_images(["parler"], cache_dir=tmp_path, install=False,
                            docker=FakeDocker(present={LOCAL_BASE}))  # type: ignore[arg-type]
    docker = FakeDocker(present={LOCAL_BASE})
    built = images.build_images(["evaluator", "parler"], cache_dir=tmp_path, install=False,
                                docker=docker)  # type: ignore[arg-type]
    evaluator, parler = (b.image for b in built)
    assert parler.key == "parler" and docker.builds[1] == (
        parler.tag, {"BASE_IMAGE": evaluator.tag})
