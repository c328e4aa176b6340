"""The evaluation child process: ``python -m scoring.child`` reads one ``Job`` on stdin, scores
it, and writes ``scoring.protocol`` lines on stdout (statuses, then the result); logs go to
stderr. One evaluation per process."""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import sys
from typing import IO

from scoring.protocol import PARENT_PID_ENV, Job, ResultLine, StatusLine, write_line
from scoring.types import ScoringResult, Step
from speechstream.settings import ScoringSettings


def _send(channel: IO[str], message: StatusLine | ResultLine) -> None:
    channel.write(write_line(message))
    channel.flush()


def run_job(job: Job, channel: IO[str]) -> ScoringResult:
    """Score the job's submission, streaming statuses to ``channel``; never raises."""
    settings = ScoringSettings(**job.settings)

    def report(status: Step, note: str | None) -> None:
        _send(channel, StatusLine(status=status, note=note))

    try:
        # The engine (torch, transformers) is imported before the memory limit is set: the
        # limit bounds the evaluation, and mapping torch's libraries under it fails.
        from scoring.engine import ScoringEngine

        if settings.memory_limit_bytes and job.device == "cpu":
            limit = settings.memory_limit_bytes
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        engine = ScoringEngine(settings, job.device)
        try:
            return engine.score(job.submission, report)
        finally:
            engine.close()
    except MemoryError as exc:
        cap = f" (limit {settings.memory_limit_bytes} bytes)" if settings.memory_limit_bytes else ""
        return ScoringResult.failed(
            "OUT_OF_MEMORY", f"the evaluation ran out of memory{cap}: {exc!r}"
        )
    except BaseException as exc:  # the child must always answer; the parent turns this into FAILED
        return ScoringResult.failed("CRASHED", f"{type(exc).__name__}: {exc}"[:500])


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
    job = Job.model_validate_json(sys.stdin.read())
    _send(channel, ResultLine(result=run_job(job, channel)))
    channel.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
