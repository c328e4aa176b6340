"""Watches the intake worker's table recovery: a worker whose tables are being rebuilt from
their changelogs routes nothing, so a recovery that receives no changelog record for a while
is a stall, shown in ``/health`` with what each waiting changelog partition looks like.

A partition's state comes from three places that have to agree for its records to arrive:
Faust's recovery (the offset it has read to and the highwater it waits for), Faust's consumer
(whether the partition is among those it takes records of, and the read offset below which its
fetch loop drops records as already seen) and aiokafka's subscription (the fetch position).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import faust

log = logging.getLogger(__name__)

CHECK_S = 5.0


@dataclass
class RecoveryWatch:
    """Checked every :data:`CHECK_S` by a Faust timer; ``stalled`` holds the waiting
    partitions' states while the recovery has received nothing for ``stall_s``."""

    app: faust.App
    stall_s: float
    stalled: dict[str, dict[str, Any]] | None = None
    since: float | None = field(default=None, repr=False)

    def check(self, now: float | None = None) -> None:
        """Look at the recovery now; log a stall once, when it starts."""
        now = time.monotonic() if now is None else now
        recovery = self.app.tables.recovery
        started = recovery._recovery_started_at
        if not recovery.in_recovery or started is None:
            self.stalled = self.since = None
            return
        received = recovery._active_events_received_at.values()
        quiet_since = max(received, default=started)
        if now - quiet_since < self.stall_s:
            self.stalled = self.since = None
            return
        waiting = {tp: left for tp, left in recovery.active_remaining().items() if left > 0}
        stalled = {f"{tp.topic}[{tp.partition}]": self._state(tp) for tp in sorted(waiting)}
        if self.stalled is None:
            log.warning("table recovery has received no changelog record for %.0f s; "
                        "waiting partitions: %s; flow: %s", now - quiet_since, stalled,
                        self.flow())
        self.stalled, self.since = stalled, quiet_since

    def flow(self) -> dict[str, Any]:
        """Whether records can flow to the recovery at all: Faust's consumer flow (stopped
        in a rebalance, resumed by the recovery), the streams' flow control, and what the
        fetch loop's task is waiting on (its innermost frame)."""
        try:
            consumer = self.app.consumer
            state: dict[str, Any] = {
                "flow_active": consumer.flow_active,
                "can_resume_flow": consumer.can_resume_flow.is_set(),
                "suspend_flow": consumer.suspend_flow.is_set(),
                "flow_control_active": self.app.flow_control.is_active(),
            }
            tasks = [t for t in self.app._fetcher._futures if not t.done()]
            state["fetch_loop"] = [_frame(t) for t in tasks] or "not running"
        except Exception as exc:  # noqa: BLE001 - a diagnosis never stops the worker
            return {"unknown": str(exc)}
        return state

    def _state(self, tp: Any) -> dict[str, Any]:
        recovery = self.app.tables.recovery
        consumer = self.app.consumer
        state: dict[str, Any] = {
            "read_to": recovery.active_offsets.get(tp),
            "highwater": recovery.active_highwaters.get(tp),
            "taken": tp in (consumer._active_partitions or ()),
            "paused": tp in consumer._paused_partitions,
            "read_offset": consumer._read_offset.get(tp),
        }
        try:  # aiokafka's own view, read from the consumer thread's objects
            aio = consumer._thread._ensure_consumer()
            assignment = aio._fetcher._subscriptions.subscription.assignment
            value = assignment.state_value(tp) if assignment is not None else None
            state["fetch_position"] = value.position if value is not None \
                and value.has_valid_position else None
            state["buffered"] = tp in aio._fetcher._records
        except Exception as exc:  # noqa: BLE001 - a diagnosis never stops the worker
            state["fetch_position"] = f"unknown: {exc}"
        return state


def _frame(task: Any) -> str:
    """Where ``task`` waits: the chain of coroutines it awaits, outermost first."""
    chain, coro = [], task.get_coro()
    while coro is not None and len(chain) < 30:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None) \
            or getattr(coro, "gi_frame", None)
        if frame is not None:
            chain.append(f"{frame.f_code.co_name}:{frame.f_lineno}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None) \
            or getattr(coro, "gi_yieldfrom", None)
    return " > ".join(chain) or "no frame"


def watch_recovery(app: faust.App, stall_s: float) -> RecoveryWatch:
    """A :class:`RecoveryWatch` of ``app``, checked by a timer of the app."""
    watch = RecoveryWatch(app, stall_s)

    @app.timer(CHECK_S)
    async def check_recovery() -> None:
        watch.check()

    return watch
