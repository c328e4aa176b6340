"""The evaluation child process: ``python -m scoring.child`` reads a ``Prepare`` line on stdin
and loads what does not depend on the submission (torch, transformers, the model code, the
reference voice and the transcriber; the CUDA context on a GPU), says so on the ready pipe,
then reads one ``Job`` line, scores it, and writes ``scoring.protocol`` lines on stdout
(statuses, then the result); logs go to stderr. One evaluation per process."""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import sys
from typing import IO, TYPE_CHECKING

from scoring.protocol import (
    PARENT_PID_ENV,
    READY,
    READY_FD_ENV,
    Job,
    Prepare,
    ResultLine,
    StatusLine,
    write_line,
)
from scoring.types import ScoringResult, Step
from speechstream.settings import ScoringSettings

if TYPE_CHECKING:
    from scoring.engine import ScoringEngine


def _send(channel: IO[str], message: StatusLine | ResultLine) -> None:
    channel.write(write_line(message))
    channel.flush()


def prepare(order: Prepare) -> ScoringEngine | None:
    """The engine of ``order``'s settings, set up on its device, its model code imported; None
    when any of it fails (the job then sets up again, and its result says what failed)."""
    try:
        import torch

        from scoring.engine import ScoringEngine
        from scoring.models import preload

        preload()
        engine = ScoringEngine(ScoringSettings(**order.settings), order.device)
        engine.setup()
        if engine.device.type == "cuda":
            torch.zeros(1, device=engine.device)  # the CUDA context, before the job
        return engine
    except Exception as exc:  # noqa: BLE001 - the job meets it again and reports it
        print(f"evaluation process: preparing failed: {type(exc).__name__}: {exc}",
              file=sys.stderr)
        return None


def run_job(job: Job, channel: IO[str], prepared: ScoringEngine | None = None,
            prepared_for: Prepare | None = None) -> ScoringResult:
    """Score the job's submission, streaming statuses to ``channel``; never raises.

    ``prepared`` is used when it was prepared (``prepared_for``) with the job's very settings
    and device; otherwise the engine is made here, under the memory limit.
    """
    settings = ScoringSettings(**job.settings)

    def report(status: Step, note: str | None) -> None:
        _send(channel, StatusLine(status=status, note=note))

    engine = None
    if (prepared is not None and prepared_for is not None
            and prepared_for.settings == job.settings and prepared_for.device == job.device):
        engine = prepared
    elif prepared is not None:
        prepared.close()
    try:
        # The engine (torch, transformers) is imported before the memory limit is set: the
        # limit bounds the evaluation, and mapping torch's libraries under it fails. What a
        # warm process loaded ahead (the transcriber, the reference voice) counts under it.
        from scoring.engine import ScoringEngine

        if settings.memory_limit_bytes and job.device == "cpu":
            limit = settings.memory_limit_bytes
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        if engine is None:
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


def _say_ready() -> None:
    fd = os.environ.get(READY_FD_ENV)
    if fd is None:
        return
    try:
        os.write(int(fd), READY)
        os.close(int(fd))
    except OSError:
        pass  # the parent stopped listening; the job line (or EOF) still comes on stdin


def main() -> int:
    """Entry point: the protocol keeps the real stdout; anything printed goes to stderr."""
    die_with_parent()
    channel = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    order = Prepare.model_validate_json(sys.stdin.readline())
    engine = prepare(order)
    _say_ready()
    line = sys.stdin.readline()
    if not line.strip():  # given back unused (a pool closing, or replaced)
        if engine is not None:
            engine.close()
        return 0
    job = Job.model_validate_json(line)
    _send(channel, ResultLine(result=run_job(job, channel, engine, order)))
    channel.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
