"""Debian's Prometheus for the dev stack: it scrapes the services a developer runs on this
machine and evaluates the deployment's alert rules (``docker/prometheus/rules.yml``), so the
same rules and queries can be tried without containers.

Which services it scrapes comes from target files (Prometheus' file-based discovery) in
``<state dir>/prometheus/targets/``: ``speechstream demo`` writes ``demo.json`` for the
services of its run, and a developer adds services of their own with a file beside it
(:func:`write_targets`). A target's ``service`` label becomes its ``job``, as in the compose
stack, so the rules' labels read the same. Prometheus reads a changed target file within
seconds; nothing is restarted.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from devstack.exceptions import StartupError
from devstack.host import (
    LOOPBACK,
    Tool,
    daemon_pid,
    log_tail,
    process_alive,
    require_port_free,
    require_tool,
    spawn_daemon,
    stop_daemon,
)

PROMETHEUS = Tool("prometheus", "prometheus")
RULES = Path(__file__).resolve().parent.parent / "docker" / "prometheus" / "rules.yml"
"""The deployment's alert rules, evaluated by the dev stack's Prometheus as they are."""
SCRAPE_INTERVAL_S = 5
RETENTION = "2d"


def render_config(targets_dir: Path, rules: Path) -> str:
    """The Prometheus configuration: every target file of ``targets_dir``, the ``rules``."""
    config = {
        "global": {"scrape_interval": f"{SCRAPE_INTERVAL_S}s", "evaluation_interval": "15s"},
        "rule_files": [str(rules)],
        "scrape_configs": [{
            "job_name": "speechstream",
            "file_sd_configs": [{"files": [str(targets_dir / "*.json")],
                                 "refresh_interval": "5s"}],
            # A target's service is its job, as in the compose stack's configuration.
            "relabel_configs": [{"source_labels": ["service"], "target_label": "job"}],
        }],
    }
    return json.dumps(config, indent=2) + "\n"  # YAML is a superset of JSON


def write_targets(targets_dir: Path, name: str, services: Mapping[str, str]) -> Path:
    """Write ``<name>.json``: each service (its name → ``host:port`` of its ``/metrics``) as a
    target; replaced whole (written aside, then renamed), so Prometheus never reads half."""
    targets_dir.mkdir(parents=True, exist_ok=True)
    groups = [{"targets": [address], "labels": {"service": service}}
              for service, address in sorted(services.items())]
    path = targets_dir / f"{name}.json"
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(groups, indent=2) + "\n")
    os.replace(partial, path)
    return path


@dataclass(frozen=True)
class PrometheusNode:
    """One Prometheus server on a loopback port, its files under ``base_dir``."""

    base_dir: Path
    port: int
    rules: Path = RULES

    @property
    def targets_dir(self) -> Path:
        return self.base_dir / "targets"

    @property
    def config_file(self) -> Path:
        return self.base_dir / "prometheus.yml"

    @property
    def pid_file(self) -> Path:
        return self.base_dir / "prometheus.pid"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "prometheus.log"

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def running_pid(self) -> int | None:
        """The pid of this node's server when it runs (checked against its command line)."""
        return daemon_pid(self.pid_file, str(self.config_file))

    def start(self, *, install: bool = True, timeout_s: float = 60.0) -> int:
        """Write the configuration and start the server (installing Debian's ``prometheus``
        when allowed and missing); its pid once it answers ready."""
        binary = require_tool(PROMETHEUS, install=install)
        require_port_free(self.port, "prometheus", "SPEECHSTREAM_DEV_PROMETHEUS_PORT")
        self.targets_dir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(render_config(self.targets_dir, self.rules))
        pid = spawn_daemon([
            binary, f"--config.file={self.config_file}",
            f"--storage.tsdb.path={self.base_dir / 'data'}",
            f"--storage.tsdb.retention.time={RETENTION}",
            f"--web.listen-address={LOOPBACK}:{self.port}",
        ], log_file=self.log_file, cwd=self.base_dir)
        self.pid_file.write_text(f"{pid}\n")
        self.wait_ready(pid, timeout_s)
        return pid

    def wait_ready(self, pid: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not process_alive(pid):
                raise StartupError(f"prometheus exited; {self.log_file}:\n"
                                   f"{log_tail(self.log_file)}")
            if self.ready():
                return
            time.sleep(0.5)
        raise StartupError(f"prometheus did not answer {self.url}/-/ready within {timeout_s:.0f}"
                           f" s; {self.log_file}:\n{log_tail(self.log_file)}")

    def ready(self) -> bool:
        """Whether it answers its readiness endpoint."""
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Stop the server this node started; False when it was not running."""
        return stop_daemon(self.pid_file, str(self.config_file), timeout=timeout_s)
