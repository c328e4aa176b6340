"""The evaluation child process: ``python -m scoring.child`` reads one JSON job on stdin, scores
it, and writes JSON lines on stdout (statuses, then the result); logs go to stderr."""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import sys
from typing import IO, Any

from scoring.types import ScoringResult, Submission
from speechstream.settings import ScoringSettings


def _send(channel: IO[str], message: dict[str, Any]) -> None:
    channel.write(json.dumps(message) + "\n")
    channel.flush()


def run_job(job: dict[str, Any], channel: IO[str]) -> ScoringResult:
    """Score the job's submission, streaming statuses to ``channel``; never raises."""
    settings = ScoringSettings(**job["settings"])
    submission = Submission.model_validate(job["submission"])
    device = str(job.get("device", "cpu"))
    try:
        # The engine (torch, transformers) is imported before the memory limit is set: the
        # limit bounds the evaluation, and mapping torch's libraries under it fails.
        from scoring.engine import ScoringEngine

        if settings.memory_limit_bytes and device == "cpu":
            limit = settings.memory_limit_bytes
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        engine = ScoringEngine(settings, device)
        try:
            return engine.score(
                submission,
                lambda status, note: _send(
                    channel, {"kind": "status", "status": status, "note": note}
                ),
            )
        finally:
            engine.close()
    except MemoryError as exc:
        cap = f" (limit {settings.memory_limit_bytes} bytes)" if settings.memory_limit_bytes else ""
        return ScoringResult.failed(
            "OUT_OF_MEMORY", f"the evaluation ran out of memory{cap}: {exc!r}"
        )
    except BaseException as exc:  # the child must always answer; the parent turns this into FAILED
        return ScoringResult.failed("CRASHED", f"{type(exc).__name__}: {exc}"[:500])


PARENT_PID_ENV = "SPEECHSTREAM_EVALUATION_PARENT_PID"
PR_SET_PDEATHSIG = 1


def die_with_parent() -> bool:
    """Linux: have the kernel SIGKILL this process when its parent dies (a kill -9 of the
    evaluator included), so an evaluation never outlives its evaluator and keeps its (GPU)
    memory. Exits at once when the parent named in the environment is already gone. False
    where the kernel offers no such signal (not Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    parent = os.environ.get(PARENT_PID_ENV)
    if parent is not None and os.getppid() != int(parent):
        os._exit(1)  # the parent died before the signal was armed
    return True


def main() -> int:
    """Entry point: the protocol keeps the real stdout; anything printed goes to stderr."""
    die_with_parent()
    channel = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    job = json.loads(sys.stdin.read())
    result = run_job(job, channel)
    _send(channel, {"kind": "result", "result": result.model_dump(mode="json")})
    channel.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
