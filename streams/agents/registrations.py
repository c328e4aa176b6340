"""Agents for registrations: signature and uid ownership (by uid), then one uid per hotkey (by
hotkey), then the validated registry.

A registration first claims its uid in ``uid_owner`` (keyed by uid, like the registrations
topic), then goes, re-keyed by hotkey, to ``registrations.claimed``, where ``hotkey_uid`` (keyed
by hotkey) says whether the hotkey already holds another uid. If it does, the registration is
rejected with ``HOTKEY_HAS_OTHER_UID`` and its claim is handed back through
``registrations.released`` (keyed by uid), which frees the uid unless someone else holds it.
"""

from __future__ import annotations

import time

import faust

from schemas.codec import encode
from schemas.events import MinerRegistered
from streams.agents.emit import emit, reject
from streams.deadletter import decode_or_dead_letter
from streams.metrics import StreamsMetrics
from streams.rules import check_hotkey, check_registration, check_signature
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
            # The same event, re-keyed by hotkey: its id stays the miner's.
            await s.claimed.send(key=p.hotkey.encode(), value=encode(env))
            metrics.seconds.observe(time.perf_counter() - started)

    @app.agent(s.claimed, name="check_hotkey")
    async def check_hotkey_agent(stream: faust.StreamT) -> None:
        async for event in stream.events():
            env = await decode_or_dead_letter(event, s.deadletter, metrics, MinerRegistered)
            if env is None:
                continue
            p = env.payload
            rejection = check_hotkey(p, s.hotkey_uid.get(p.hotkey))
            if rejection is not None:
                await reject(s.rejected, env, rejection, metrics)
                await emit(s.released, p, key=str(p.uid), source=env, stage="released")
                continue
            s.hotkey_uid[p.hotkey] = p.uid
            s.hotkey_registered[p.hotkey] = p.block
            await emit(s.miners, p, key=p.hotkey, source=env, stage="registered")
            metrics.validated.labels(p.type).inc()

    @app.agent(s.released, name="release_uid")
    async def release_uid(stream: faust.StreamT) -> None:
        async for event in stream.events():
            env = await decode_or_dead_letter(event, s.deadletter, metrics, MinerRegistered)
            if env is None:
                continue
            p = env.payload
            uid_key = str(p.uid)
            if s.uid_owner.get(uid_key) == p.hotkey:
                del s.uid_owner[uid_key]
