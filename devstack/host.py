"""The machine under the dev stack: tools and their packages, commands, daemons and their pid
files, ports."""

from __future__ import annotations

import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from devstack.exceptions import CommandFailedError, MissingToolError, PortInUseError

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Tool:
    """A program on ``PATH`` and the Debian package that provides it."""

    name: str
    apt_package: str


JAVA = Tool("java", "default-jdk-headless")
MAVEN = Tool("mvn", "maven")


def is_root() -> bool:
    """Whether this process runs as root (it may install packages; postgres runs as postgres)."""
    return os.geteuid() == 0


def install_command(packages: Sequence[str]) -> str:
    """The exact command a user runs to install ``packages``."""
    prefix = "" if is_root() else "sudo "
    return f"{prefix}apt-get update && {prefix}apt-get install -y {' '.join(packages)}"


def apt_install(packages: Sequence[str]) -> None:
    """Install Debian packages (root only); raises ``MissingToolError`` naming the command."""
    if not is_root() or shutil.which("apt-get") is None:
        raise MissingToolError(f"missing {', '.join(packages)}; run: {install_command(packages)}")
    env_prefix = ["env", "DEBIAN_FRONTEND=noninteractive"]
    run_command([*env_prefix, "apt-get", "update", "-q"], what="apt-get update", timeout=900)
    run_command(
        [*env_prefix, "apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
        what=f"apt-get install {' '.join(packages)}",
        timeout=1800,
    )


def require_tool(tool: Tool, *, install: bool) -> str:
    """The path of ``tool``, installing its package first when allowed and possible."""
    path = shutil.which(tool.name)
    if path is None and install and is_root() and shutil.which("apt-get"):
        apt_install([tool.apt_package])
        path = shutil.which(tool.name)
    if path is None:
        raise MissingToolError(
            f"{tool.name} not found on PATH; install it with: {install_command([tool.apt_package])}"
        )
    return path


def run_command(
    argv: Sequence[str],
    *,
    what: str,
    cwd: Path | None = None,
    user: str | None = None,
    timeout: float = 600,
) -> str:
    """Run ``argv`` (as ``user`` if given), return stdout; on failure raise with its output."""
    full = ["runuser", "-u", user, "--", *argv] if user else list(argv)
    try:
        proc = subprocess.run(
            full, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError as exc:
        raise MissingToolError(f"{what}: {full[0]} not found ({shlex.join(full)})") from exc
    except subprocess.TimeoutExpired as exc:
        raise CommandFailedError(
            f"{what}: timed out after {timeout:.0f}s: {shlex.join(full)}"
        ) from exc
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr).strip()[-4000:]
        raise CommandFailedError(
            f"{what} failed (exit {proc.returncode}): {shlex.join(full)}\n{output}"
        )
    return proc.stdout


def spawn_daemon(argv: Sequence[str], *, log_file: Path, cwd: Path) -> int:
    """Start ``argv`` detached (own session, output appended to ``log_file``); return its pid.

    The process is not a child of the caller, so it outlives the command that started it and
    leaves no zombie behind; ``stop_process`` ends it by pid.
    """
    script = 'log="$1"; shift; "$@" >>"$log" 2>&1 </dev/null & echo $!'
    out = subprocess.run(
        ["sh", "-c", script, "sh", str(log_file), *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        start_new_session=True,
        timeout=30,
    )
    if out.returncode != 0 or not out.stdout.strip().isdigit():
        raise CommandFailedError(f"could not start {shlex.join(argv)}: {out.stderr.strip()}")
    return int(out.stdout.strip())


def read_pid(pid_file: Path) -> int | None:
    """The pid in ``pid_file`` (first line), or None when there is none."""
    try:
        first = pid_file.read_text().split("\n", 1)[0].strip()
    except (FileNotFoundError, PermissionError):
        return None
    return int(first) if first.isdigit() else None


def process_alive(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X")


def process_cmdline(pid: int) -> str:
    """The command line of ``pid`` joined by spaces ('' when it is gone)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def stop_process(pid: int, *, timeout: float = 60.0) -> None:
    """SIGTERM ``pid``, wait up to ``timeout`` seconds, then SIGKILL it."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not process_alive(pid):
                return
            time.sleep(0.2)


def daemon_pid(pid_file: Path, *marks: str) -> int | None:
    """The pid in ``pid_file`` while that process lives and its command line holds every one
    of ``marks`` (so that a pid reused by another process is not taken for the daemon)."""
    pid = read_pid(pid_file)
    if pid is None or not process_alive(pid):
        return None
    cmdline = process_cmdline(pid)
    return pid if all(mark in cmdline for mark in marks) else None


def stop_daemon(pid_file: Path, *marks: str, timeout: float = 60.0) -> bool:
    """Stop the daemon ``pid_file`` names (:func:`daemon_pid`) and remove the file; False when
    it was not running."""
    pid = daemon_pid(pid_file, *marks)
    pid_file.unlink(missing_ok=True)
    if pid is None:
        return False
    stop_process(pid, timeout=timeout)
    return True


def port_open(port: int, host: str = LOOPBACK) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def require_port_free(port: int, what: str, setting: str) -> None:
    """Raise ``PortInUseError`` when ``port`` is already taken."""
    if port_open(port):
        raise PortInUseError(
            f"{what}: port {port} on {LOOPBACK} is already in use by another process; "
            f"choose another with {setting}=<port>"
        )


EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST_PICKED_PORT = 10000


def ephemeral_low() -> int:
    """The lowest port the kernel hands to outgoing connections (32768 when unknown)."""
    try:
        return int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A TCP port free right now on every interface, below the kernel's ephemeral range: a
    port from that range can be taken by any outgoing connection before its user binds it (a
    demo's evaluator once lost its metrics port so, to a client's connection), one below it
    only by another bind."""
    low = ephemeral_low()
    for _ in range(200):
        if low <= LOWEST_PICKED_PORT:
            break
        port = random.randrange(LOWEST_PICKED_PORT, low)
        if _bindable(port):
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file ('' when unreadable)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
