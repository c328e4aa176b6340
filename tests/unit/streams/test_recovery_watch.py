"""The recovery watch: a table recovery that receives no changelog record for ``stall_s`` is
reported with each waiting partition's state, and cleared once records come or it ends."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from types import SimpleNamespace
from typing import Any

from faust.types import TP

from streams.recovery_watch import RecoveryWatch

STUCK = TP("app-repo_holder-changelog", 2)
DONE = TP("app-repo_holder-changelog", 0)


def _app(*, in_recovery: bool, started: float, received: dict[TP, float]) -> Any:
    recovery = SimpleNamespace(
        in_recovery=in_recovery, _recovery_started_at=started,
        _active_events_received_at=received,
        active_offsets=Counter({STUCK: 10, DONE: 41}),
        active_highwaters=Counter({STUCK: 57, DONE: 41}),
    )
    recovery.active_remaining = lambda: Counter({STUCK: 47, DONE: 0})
    consumer = SimpleNamespace(_active_partitions={STUCK, DONE}, _paused_partitions=set(),
                               _read_offset={STUCK: 60}, _thread=None)
    return SimpleNamespace(tables=SimpleNamespace(recovery=recovery), consumer=consumer)


def test_a_recovery_quiet_for_the_stall_time_is_reported_with_its_waiting_partitions() -> None:
    watch = RecoveryWatch(_app(in_recovery=True, started=100.0, received={}), stall_s=60)
    watch.check(now=150.0)
    assert watch.stalled is None  # quiet for 50 s: not yet
    watch.check(now=161.0)
    assert watch.stalled is not None and list(watch.stalled) == ["app-repo_holder-changelog[2]"]
    state = watch.stalled["app-repo_holder-changelog[2]"]
    assert state["read_to"] == 10 and state["highwater"] == 57
    assert state["taken"] is True and state["paused"] is False
    # The consumer's read offset past what the recovery has read: its records would be dropped.
    assert state["read_offset"] == 60
    assert str(state["fetch_position"]).startswith("unknown")  # no aiokafka consumer here
    assert watch.since == 100.0


def test_records_arriving_or_the_recovery_ending_clear_the_stall() -> None:
    app = _app(in_recovery=True, started=100.0, received={STUCK: 90.0})
    watch = RecoveryWatch(app, stall_s=60)
    watch.check(now=170.0)
    assert watch.stalled is not None
    app.tables.recovery._active_events_received_at[STUCK] = 169.0
    watch.check(now=171.0)
    assert watch.stalled is None
    watch.check(now=240.0)
    assert watch.stalled is not None
    app.tables.recovery.in_recovery = False
    watch.check(now=241.0)
    assert watch.stalled is None and watch.since is None


def test_the_flow_is_reported_with_where_the_fetch_loop_waits() -> None:
    app = _app(in_recovery=True, started=100.0, received={})
    assert list(RecoveryWatch(app, stall_s=60).flow()) == ["unknown"]  # a diagnosis, no error

    async def getmany() -> None:
        await asyncio.sleep(3600)

    async def drain() -> None:
        await getmany()

    async def look() -> dict[str, Any]:
        task = asyncio.ensure_future(drain())
        await asyncio.sleep(0)
        flag = SimpleNamespace(is_set=lambda: False)
        app.consumer.__dict__.update(flow_active=False, can_resume_flow=flag,
                                     suspend_flow=SimpleNamespace(is_set=lambda: True))
        app.flow_control = SimpleNamespace(is_active=lambda: True)
        app._fetcher = SimpleNamespace(_futures={task})
        try:
            return RecoveryWatch(app, stall_s=60).flow()
        finally:
            task.cancel()

    flow = asyncio.run(look())
    assert flow["flow_active"] is False and flow["suspend_flow"] is True
    assert flow["flow_control_active"] is True
    assert re.fullmatch(r"drain:\d+ > getmany:\d+ > sleep:\d+", flow["fetch_loop"][0])
