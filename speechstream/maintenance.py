"""The maintenance report: one section per thing an operator may need to take in hand.

The stages check their own parts (``sinks.maintenance``: waiting requests and dead letters;
``scoring.cache``: the model cache) and each returns a :class:`Section`; ``speechstream
maintenance`` prints the :class:`Report` and exits with its :attr:`Report.exit_code`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
_UNIT_S = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


@dataclass
class Section:
    """What one check found: a line that sums it up, detail lines, and what was or is to be
    done (``action``)."""

    name: str
    needs_hand: bool
    summary: str
    lines: list[str] = field(default_factory=list)
    action: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    applied: bool = False
    """Whether ``action`` is what was done (``--apply``), not what is left to do."""

    def as_dict(self) -> dict[str, Any]:
        """The section for ``--json``."""
        return {"name": self.name, "needs_hand": self.needs_hand, "summary": self.summary,
                "action": self.action, "applied": self.applied, **self.data}


@dataclass
class Report:
    """Every section of one run; ``applied`` says whether fixes were attempted."""

    sections: list[Section]
    applied: bool = False

    @property
    def needs_hand(self) -> bool:
        """Whether anything (still) needs a hand."""
        return any(s.needs_hand for s in self.sections)

    @property
    def exit_code(self) -> int:
        """0 when nothing needs a hand, 1 when something (still) does."""
        return 1 if self.needs_hand else 0

    def text(self) -> str:
        """The report for people: a heading per section, ``ok`` or what needs a hand."""
        out: list[str] = []
        for s in self.sections:
            out.append(f"== {s.name}: {'NEEDS A HAND' if s.needs_hand else 'ok'}")
            out.append(f"   {s.summary}")
            out.extend(f"   {line}" for line in s.lines)
            if s.action:
                out.append(f"   {'done' if s.applied else 'to do'}: {s.action}")
            out.append("")
        verdict = "something needs a hand" if self.needs_hand else "nothing needs a hand"
        out.append(f"{verdict}{' (after --apply)' if self.applied else ''}")
        return "\n".join(out)

    def json(self) -> str:
        """The report for scripts: one JSON object."""
        return json.dumps({"needs_hand": self.needs_hand, "applied": self.applied,
                           "sections": [s.as_dict() for s in self.sections]}, default=str)


def parse_duration(text: str) -> float:
    """Seconds of a duration like ``90``, ``30s``, ``15m``, ``1h``, ``2d`` or ``1h30m``;
    ``ValueError`` for anything else."""
    text = text.strip().lower()
    parts = list(_DURATION.finditer(text))
    if not text or not parts or "".join(m.group(0) for m in parts) != text:
        raise ValueError(f"not a duration: {text!r} (say 30s, 15m, 1h, 2d or 1h30m)")
    return sum(float(m.group(1)) * _UNIT_S[m.group(2)] for m in parts)


def format_duration(seconds: float) -> str:
    """``3d 4h``, ``2h 05m``, ``4m 10s``, ``12s``: the two largest units."""
    s = max(0, int(seconds))
    days, rest = divmod(s, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def format_bytes(n: int) -> str:
    """``1.5 GiB``, ``12.0 MiB``, ``300 B``."""
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"
