"""The evaluation child's protocol (``scoring.isolation`` ↔ ``scoring.child``).

On the child's stdin, two JSON lines: a ``Prepare`` (settings and device: the child loads what
does not depend on the submission, then says so on the ready pipe), and later the ``Job``.
A warm process has its ``Prepare`` long before its ``Job``; a cold one gets both at once. On
its stdout, JSON lines: each status as the engine reports it, then the ``ScoringResult``
itself."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, TypeAdapter

from scoring.types import ScoringResult, Step, Submission

PARENT_PID_ENV = "SPEECHSTREAM_EVALUATION_PARENT_PID"
"""The parent's pid, so that a child whose parent died before it started exits at once."""
READY_FD_ENV = "SPEECHSTREAM_EVALUATION_READY_FD"
"""The descriptor the child writes ``READY`` to once prepared (and then closes)."""
READY = b"ready\n"


class Prepare(BaseModel):
    """What a process loads before its job: the settings (``ScoringSettings.child_payload()``)
    and the device."""

    settings: dict[str, Any]
    device: str = "cpu"


class Job(BaseModel):
    """One evaluation: the settings (``ScoringSettings.child_payload()``, secrets included), the
    submission and the device."""

    settings: dict[str, Any]
    submission: Submission
    device: str = "cpu"


class StatusLine(BaseModel):
    """A status the engine reported."""

    kind: Literal["status"] = "status"
    status: Step
    note: str | None = None


class ResultLine(BaseModel):
    """The result: the child's last line."""

    kind: Literal["result"] = "result"
    result: ScoringResult


Line = Annotated[StatusLine | ResultLine, Field(discriminator="kind")]
_LINE: TypeAdapter[StatusLine | ResultLine] = TypeAdapter(Line)


def read_line(line: str) -> StatusLine | ResultLine:
    """One line of the child's stdout (pydantic's ``ValidationError`` when it is not one)."""
    return _LINE.validate_json(line)


def write_line(message: StatusLine | ResultLine) -> str:
    """One line for the child's stdout, newline included."""
    return message.model_dump_json() + "\n"
