"""Run one evaluation in a child process of the model's environment, with a hard time limit."""

from __future__ import annotations

import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import IO

from scoring.protocol import PARENT_PID_ENV, Job, ResultLine, read_line
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


def run_child(
    python: Path | str,
    settings: ScoringSettings,
    submission: Submission,
    device: str,
    report: Report,
    limit_s: float,
) -> ScoringResult:
    """Run ``python -P -m scoring.child`` on one job; a hang, crash or OOM there is FAILED here.

    ``-P`` keeps the working directory off the child's ``sys.path``: the child imports only its
    own environment's packages (each environment has this project installed).
    """
    job = Job(settings=settings.child_payload(), submission=submission, device=device)
    started = time.monotonic()
    process = subprocess.Popen(
        [str(python), "-P", "-m", "scoring.child"],
        env={**os.environ, PARENT_PID_ENV: str(os.getpid())},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )
    assert process.stdin is not None and process.stdout is not None
    assert process.stderr is not None
    lines: queue.Queue[str | None] = queue.Queue()
    tail: deque[str] = deque(maxlen=_STDERR_TAIL)
    readers = [
        threading.Thread(target=_pump, args=(process.stdout, lines), daemon=True),
        threading.Thread(target=_keep_tail, args=(process.stderr, tail), daemon=True),
    ]
    for reader in readers:
        reader.start()
    result: ScoringResult | None = None
    try:
        try:
            process.stdin.write(job.model_dump_json())
            process.stdin.close()
        except BrokenPipeError:
            pass  # the child died at start; its exit code says why below
        while result is None:
            remaining = started + limit_s - time.monotonic()
            if remaining <= 0:
                return ScoringResult.failed(
                    "TIME_LIMIT", f"the evaluation did not finish within {limit_s:.0f} s"
                )
            try:
                line = lines.get(timeout=min(remaining, 1.0))
            except queue.Empty:
                continue
            if line is None:
                process.wait(10)
                for reader in readers:
                    reader.join(1)
                return ScoringResult.failed(*_death_reason(process.returncode, tail))
            message = read_line(line)
            if isinstance(message, ResultLine):
                result = message.result
            else:
                report(message.status, message.note)
        return result
    finally:
        if process.poll() is None:
            try:
                process.wait(10 if result is not None else 0.01)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def run_isolated(
    settings: ScoringSettings,
    submission: Submission,
    device: str = "cpu",
    report: Report | None = None,
    time_limit_s: float | None = None,
) -> ScoringResult:
    """Score ``submission`` in a fresh child process; the caller never holds model memory.

    The child starts in this environment; when its prechecks find an architecture that another
    evaluator environment runs (Parler-TTS), the evaluation is run again, within the same time
    limit, with that environment's interpreter (the first child stopped at its prechecks, before
    reporting RUNNING). ``report`` gets each status the engine reports, as it reports it.
    """
    report = report or silent
    limit = time_limit_s if time_limit_s is not None else settings.time_limit_s + STARTUP_GRACE_S
    started = time.monotonic()
    result = run_child(sys.executable, settings, submission, device, report, limit)
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
    return run_child(python, settings, submission, device, report, remaining)
