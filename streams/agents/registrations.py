"""Agents for registrations: signature and uid ownership, then the validated registry."""

from __future__ import annotations

import time

import faust

from schemas.events import MinerRegistered
from streams.agents.emit import emit, reject
from streams.deadletter import decode_or_dead_letter
from streams.metrics import StreamsMetrics
from streams.rules import check_registration, check_signature
from streams.topics import Streams


def register_agents(app: faust.App, s: Streams, metrics: StreamsMetrics) -> None:
    """Attach the registration agents to ``app``."""

    @app.agent(s.registrations, name="validate_registration")
    async def validate_registration(stream: faust.StreamT) -> None:
        async for event in stream.events():
            started = time.perf_counter()
            env = await decode_or_dead_letter(event, s.deadletter, metrics, MinerRegistered)
            if env is None:
                continue
            p = env.payload
            uid_key = str(p.uid)
            rejection = check_signature(p) or check_registration(p, s.uid_owner.get(uid_key))
            if rejection is not None:
                await reject(s.rejected, env, rejection, metrics)
                continue
            if s.uid_owner.get(uid_key) is None:
                s.uid_owner[uid_key] = p.hotkey
            await emit(s.miners, p, key=p.hotkey, source=env, stage="registered")
            metrics.validated.labels(p.type).inc()
            metrics.seconds.observe(time.perf_counter() - started)

    @app.agent(s.miners, name="track_miners")
    async def track_miners(stream: faust.StreamT) -> None:
        async for event in stream.events():
            env = await decode_or_dead_letter(event, s.deadletter, metrics, MinerRegistered)
            if env is not None:
                s.hotkey_uid[env.payload.hotkey] = env.payload.uid
                s.hotkey_registered[env.payload.hotkey] = env.payload.block
