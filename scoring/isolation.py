"""Run one evaluation in a child process of the model's environment, with a hard time limit;
a :class:`WarmPool` starts the next process ahead, so that it is ready when the request is."""

from __future__ import annotations

import json
import logging
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO

from scoring.protocol import (
    PARENT_PID_ENV,
    READY,
    READY_FD_ENV,
    Job,
    Prepare,
    ResultLine,
    read_line,
)
from scoring.types import Report, ScoringResult, Submission, silent
from speechstream.settings import PARLER_SETUP, ScoringSettings

STARTUP_GRACE_S = 120.0
"""Added to the engine's own time limit for interpreter start, imports and model loading."""
_STDERR_TAIL = 30
log = logging.getLogger(__name__)


def _pump(stream: IO[str], sink: queue.Queue[str | None]) -> None:
    for line in stream:
        sink.put(line)
    sink.put(None)


def _keep_tail(stream: IO[str], tail: deque[str]) -> None:
    for line in stream:
        tail.append(line.rstrip())
        log.debug("evaluation child: %s", line.rstrip())


def _death_reason(returncode: int | None, tail: deque[str]) -> tuple[str, str]:
    if returncode is not None and returncode < 0:
        sig = signal.Signals(-returncode).name
        if -returncode == signal.SIGKILL:
            return "OUT_OF_MEMORY", f"the evaluation process was killed ({sig}), most likely OOM"
        return "CRASHED", f"the evaluation process died of {sig}"
    last = " | ".join(list(tail)[-3:])
    detail = f"; last output: {last}" if last else ""
    return "CRASHED", (
        f"the evaluation process exited with code {returncode} without a result{detail}"
    )[:500]


class EvaluationProcess:
    """One evaluation process: ``python -P -m scoring.child``, given its ``Prepare`` at start
    and its ``Job`` by :meth:`run`. ``-P`` keeps the working directory off the child's
    ``sys.path``: the child imports only its own environment's packages (each environment has
    this project installed)."""

    def __init__(self, python: Path | str, settings: ScoringSettings, device: str) -> None:
        self.python = str(python)
        self.payload = settings.child_payload()
        self.device = device
        self.started = time.monotonic()
        ready_read, ready_write = os.pipe()
        self._ready_fd: int | None = ready_read
        self._ready = False
        try:
            self.process = subprocess.Popen(
                [self.python, "-P", "-m", "scoring.child"],
                env={**os.environ, PARENT_PID_ENV: str(os.getpid()),
                     READY_FD_ENV: str(ready_write)},
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                encoding="utf-8",
                pass_fds=(ready_write,),
            )
        except BaseException:
            os.close(ready_read)
            raise
        finally:
            os.close(ready_write)
        assert self.process.stdin is not None and self.process.stdout is not None
        assert self.process.stderr is not None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._tail: deque[str] = deque(maxlen=_STDERR_TAIL)
        self._readers = [
            threading.Thread(target=_pump, args=(self.process.stdout, self._lines), daemon=True),
            threading.Thread(target=_keep_tail, args=(self.process.stderr, self._tail),
                             daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        order = Prepare(settings=self.payload, device=device)
        self._write(order.model_dump_json() + "\n", close=False)

    def key(self) -> tuple[str, str, str]:
        """What a process is prepared for: interpreter, settings, device."""
        return self.python, json.dumps(self.payload, sort_keys=True), self.device

    def _write(self, text: str, *, close: bool) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(text)
            self.process.stdin.flush()
            if close:
                self.process.stdin.close()
        except (BrokenPipeError, ValueError):
            pass  # the child died; its exit code says why when its job is run

    def alive(self) -> bool:
        """Whether the process still runs."""
        return self.process.poll() is None

    def ready(self) -> bool:
        """Whether the process has prepared (non-blocking)."""
        if not self._ready and self._ready_fd is not None:
            readable, _, _ = select.select([self._ready_fd], [], [], 0)
            if readable:
                self._ready = os.read(self._ready_fd, len(READY)) == READY
                os.close(self._ready_fd)
                self._ready_fd = None
        return self._ready

    def wait_ready(self, timeout_s: float) -> bool:
        """Wait until the process has prepared, at most ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while not self.ready() and self.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.ready()

    def run(self, submission: Submission, report: Report, limit_s: float) -> ScoringResult:
        """Give the process its job and read its statuses and result; a hang past ``limit_s``
        (counted from now), a crash or an OOM kill there is a FAILED result here."""
        job = Job(settings=self.payload, submission=submission, device=self.device)
        started = time.monotonic()
        self._write(job.model_dump_json() + "\n", close=True)
        result: ScoringResult | None = None
        try:
            while result is None:
                remaining = started + limit_s - time.monotonic()
                if remaining <= 0:
                    return ScoringResult.failed(
                        "TIME_LIMIT", f"the evaluation did not finish within {limit_s:.0f} s"
                    )
                try:
                    line = self._lines.get(timeout=min(remaining, 1.0))
                except queue.Empty:
                    continue
                if line is None:
                    self.process.wait(10)
                    for reader in self._readers:
                        reader.join(1)
                    return ScoringResult.failed(*_death_reason(self.process.returncode,
                                                               self._tail))
                message = read_line(line)
                if isinstance(message, ResultLine):
                    result = message.result
                else:
                    report(message.status, message.note)
            return result
        finally:
            if self.process.poll() is None:
                try:
                    self.process.wait(10 if result is not None else 0.01)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(10)
            self._close_ready()

    def discard(self) -> None:
        """End a process that will get no job: EOF on its stdin, then a kill if it lingers."""
        self._write("", close=True)
        try:
            self.process.wait(2)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self._close_ready()

    def _close_ready(self) -> None:
        if self._ready_fd is not None:
            os.close(self._ready_fd)
            self._ready_fd = None


class WarmPool:
    """The next evaluation process of each environment, started ahead.

    :meth:`take` hands out the waiting process prepared for exactly these settings and device
    (or starts one, cold, when there is none, it died, it waited longer than ``max_idle_s``, or
    it was prepared for other settings: that one is discarded), and at once starts the next one
    of the same environment, which prepares while the evaluation runs. An environment gets its
    waiting process once it has evaluated something (the Parler environment only after a first
    Parler model). One evaluation per process, as without the pool.

    Processes are started from one thread the pool keeps: the kernel kills a child when the
    thread that started it ends (``die_with_parent``), and a caller's thread may end first.
    """

    def __init__(self, max_idle_s: float = 900.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_idle_s = max_idle_s
        self._clock = clock
        self._waiting: dict[str, EvaluationProcess] = {}
        self._lock = threading.Lock()
        self._starter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="evaluation-start")
        self._closed = False
        self.counts = {"warm": 0, "cold": 0, "replaced": 0}
        """Evaluations given a prepared-ahead process, given a fresh one, and waiting
        processes discarded (stale, dead or prepared for other settings)."""

    def _start(self, python: Path | str, settings: ScoringSettings,
               device: str) -> EvaluationProcess:
        if self._closed:
            return EvaluationProcess(python, settings, device)
        return self._starter.submit(EvaluationProcess, python, settings, device).result()

    def warm(self, python: Path | str, settings: ScoringSettings, device: str) -> None:
        """Have a process of ``python`` prepared for ``settings`` on ``device`` waiting."""
        with self._lock:
            if self._closed:
                return
            current = self._waiting.get(str(python))
            key = (str(python), json.dumps(settings.child_payload(), sort_keys=True), device)
            if current is not None and current.alive() and current.key() == key:
                return
        self._replace(python, self._start(python, settings, device))

    def wait_ready(self, python: Path | str, timeout_s: float) -> bool:
        """Wait until the process waiting for ``python``'s next evaluation has prepared; False
        when there is none, or it did not within ``timeout_s``."""
        with self._lock:
            waiting = self._waiting.get(str(python))
        return waiting is not None and waiting.wait_ready(timeout_s)

    def _replace(self, python: Path | str, process: EvaluationProcess) -> None:
        with self._lock:
            old = None if self._closed else self._waiting.pop(str(python), None)
            if self._closed:
                old = process
            else:
                self._waiting[str(python)] = process
        if old is not None:
            old.discard()

    def take(self, python: Path | str, settings: ScoringSettings,
             device: str) -> EvaluationProcess:
        """A process for one evaluation (see the class); the next one starts behind it."""
        key = (str(python), json.dumps(settings.child_payload(), sort_keys=True), device)
        with self._lock:
            waiting = self._waiting.pop(str(python), None)
        if waiting is not None and (not waiting.alive() or waiting.key() != key
                                    or self._clock() - waiting.started > self.max_idle_s):
            log.info("replacing a waiting evaluation process (%s)",
                     "it ended" if not waiting.alive() else "other settings"
                     if waiting.key() != key else "it waited too long")
            waiting.discard()
            self.counts["replaced"] += 1
            waiting = None
        process = waiting or self._start(python, settings, device)
        self.counts["warm" if waiting is not None else "cold"] += 1
        if not self._closed:
            self._replace(python, self._start(python, settings, device))
        return process

    def close(self) -> None:
        """Discard every waiting process; the pool starts no more."""
        with self._lock:
            self._closed = True
            waiting, self._waiting = list(self._waiting.values()), {}
        for process in waiting:
            process.discard()
        self._starter.shutdown(wait=True)


def run_child(
    python: Path | str,
    settings: ScoringSettings,
    submission: Submission,
    device: str,
    report: Report,
    limit_s: float,
    pool: WarmPool | None = None,
) -> ScoringResult:
    """Run one evaluation in a process of ``python`` (from ``pool`` when given, else a fresh
    one); a hang, crash or OOM there is FAILED here."""
    process = (pool.take(python, settings, device) if pool is not None
               else EvaluationProcess(python, settings, device))
    return process.run(submission, report, limit_s)


def run_isolated(
    settings: ScoringSettings,
    submission: Submission,
    device: str = "cpu",
    report: Report | None = None,
    time_limit_s: float | None = None,
    pool: WarmPool | None = None,
) -> ScoringResult:
    """Score ``submission`` in a child process of its own (prepared ahead by ``pool`` when
    given, else started now); the caller never holds model memory.

    The child starts in this environment; when its prechecks find an architecture that another
    evaluator environment runs (Parler-TTS), the evaluation is run again, within the same time
    limit, with that environment's interpreter (the first child stopped at its prechecks, before
    reporting RUNNING). ``report`` gets each status the engine reports, as it reports it.
    """
    report = report or silent
    limit = time_limit_s if time_limit_s is not None else settings.time_limit_s + STARTUP_GRACE_S
    started = time.monotonic()
    result = run_child(sys.executable, settings, submission, device, report, limit, pool)
    if result.failure_code != "ARCHITECTURE_ELSEWHERE" or result.environment is None:
        return result
    python = settings.interpreter(result.environment)
    if python is None:
        return ScoringResult.failed(
            "ARCHITECTURE_ELSEWHERE",
            f"{result.reason}; the {result.environment} environment is not set up here: run "
            f"`{PARLER_SETUP}` (or set SPEECHSTREAM_SCORING_PARLER_PYTHON)",
            timings=result.timings,
        )
    log.info("hash %s runs in the %s environment (%s)", submission.hash, result.environment, python)
    remaining = max(1.0, limit - (time.monotonic() - started))
    return run_child(python, settings, submission, device, report, remaining, pool)
