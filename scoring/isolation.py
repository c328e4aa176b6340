"""Run one evaluation in a spawned child process with a hard time limit and memory handling."""

from __future__ import annotations

import multiprocessing as mp
import resource
import signal
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from scoring.settings import ScoringSettings
from scoring.types import ScoringResult, Submission

Report = Callable[[str, str | None], None]
STARTUP_GRACE_S = 120.0
"""Added to the engine's own time limit for interpreter start, imports and model loading."""


def _child(
    settings: ScoringSettings, submission: Submission, device: str, conn: Connection
) -> None:
    """The child's body: score, stream statuses back, send the result, exit."""
    try:
        if settings.memory_limit_bytes and device == "cpu":
            limit = settings.memory_limit_bytes
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        from scoring.engine import ScoringEngine

        engine = ScoringEngine(settings, device)
        try:
            result = engine.score(
                submission, lambda status, note: conn.send(("status", status, note))
            )
        finally:
            engine.close()
    except MemoryError as exc:
        cap = f" (limit {settings.memory_limit_bytes} bytes)" if settings.memory_limit_bytes else ""
        result = ScoringResult.failed(
            "OUT_OF_MEMORY", f"the evaluation ran out of memory{cap}: {exc!r}"
        )
    except BaseException as exc:  # the child must always answer; the parent turns this into FAILED
        result = ScoringResult.failed("CRASHED", f"{type(exc).__name__}: {exc}"[:500])
    conn.send(("result", result.model_dump(mode="json")))
    conn.close()


def _death_reason(exitcode: int | None) -> tuple[str, str]:
    if exitcode is not None and exitcode < 0:
        sig = signal.Signals(-exitcode).name
        if -exitcode == signal.SIGKILL:
            return "OUT_OF_MEMORY", f"the evaluation process was killed ({sig}), most likely OOM"
        return "CRASHED", f"the evaluation process died of {sig}"
    return "CRASHED", f"the evaluation process exited with code {exitcode} without a result"


def run_isolated(
    settings: ScoringSettings,
    submission: Submission,
    device: str = "cpu",
    report: Report | None = None,
    time_limit_s: float | None = None,
) -> ScoringResult:
    """Score ``submission`` in a fresh spawned process; a hang, crash or OOM there is a FAILED
    result here, and the caller's process never shares the model's memory."""
    report = report or (lambda status, note: None)
    limit = time_limit_s if time_limit_s is not None else settings.time_limit_s + STARTUP_GRACE_S
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    process = ctx.Process(
        target=_child, args=(settings, submission, device, child), name="speechstream-eval"
    )
    started = time.monotonic()
    process.start()
    child.close()
    result: dict[str, Any] | None = None
    try:
        while result is None:
            remaining = started + limit - time.monotonic()
            if remaining <= 0:
                return ScoringResult.failed(
                    "TIME_LIMIT", f"the evaluation did not finish within {limit:.0f} s"
                )
            if not parent.poll(min(remaining, 1.0)):
                if not process.is_alive() and not parent.poll(0):
                    process.join(5)
                    return ScoringResult.failed(*_death_reason(process.exitcode))
                continue
            try:
                message = parent.recv()
            except EOFError:
                process.join(5)
                return ScoringResult.failed(*_death_reason(process.exitcode))
            if message[0] == "status":
                report(message[1], message[2])
            else:
                result = message[1]
        return ScoringResult.model_validate(result)
    finally:
        parent.close()
        if process.is_alive():
            process.join(10 if result is not None else 0)
        if process.is_alive():
            process.kill()
            process.join(10)
