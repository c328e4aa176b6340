"""Agents for registrations and uid handovers: signature and uid ownership (by uid), then one
uid per hotkey (by hotkey), then the validated registry.

A registration first claims its uid in ``uid_owner`` (keyed by uid, like the registrations
topic), then goes, re-keyed by hotkey, to ``registrations.claimed``, where ``hotkey_uid`` (keyed
by hotkey) says whether the hotkey already holds another uid. If it does, the registration is
rejected with ``HOTKEY_HAS_OTHER_UID`` and its claim is handed back through
``registrations.released`` (keyed by uid), which frees the uid unless someone else holds it.

An operator's handover (``uid.reassigned``) takes the same path: signed by the operator's
key, it claims the uid for the new hotkey at once (``uid_handover`` remembers the hotkey that
held it), goes as a ``uid.handover`` to the new hotkey's partition, which takes the uid unless
it holds another (then the claim is handed back: the uid returns to its owner, who loses
nothing), and only then goes as a ``uid.revoked`` to the previous owner's partition, which
forgets its uid and remembers it in ``hotkey_reassigned``.
"""

from __future__ import annotations

import time
from functools import partial

import faust

from schemas.codec import encode
from schemas.envelope import Envelope
from schemas.events import MinerRegistered, UidHandover, UidReassigned, UidRevoked
from schemas.fields import SUBNET_SIZE
from streams.agents.emit import emit, reject
from streams.chain import ChainHead, appended_ms, judge_claim
from streams.deadletter import decode_or_dead_letter
from streams.metrics import StreamsMetrics
from streams.rules import (
    Rejection,
    check_block,
    check_event_id,
    check_handover,
    check_hotkey,
    check_registration,
    check_signature,
    check_uid,
    plan_handover,
    revocation_applies,
)
from streams.topics import Streams


def register_agents(
    app: faust.App, s: Streams, metrics: StreamsMetrics, operator_key: str | None = None,
    subnet_size: int = SUBNET_SIZE, chain: ChainHead | None = None,
    block_window: int | None = None,
) -> None:
    """Attach the registration agents to ``app``; ``operator_key`` (the operator's public key)
    is the only key whose uid handovers are accepted; a uid lies below ``subnet_size``; a
    registration's block lies at most ``block_window`` blocks behind the head ``chain`` knew
    when it reached the broker, and not ahead of the head (without ``chain``, or before a head
    is published, no bound). A handover's block is the operator's word: not bounded."""

    def check_claimed(p: MinerRegistered, head: int | None,
                      head_then: int | None) -> Rejection | None:
        return check_block(p.block, None, head, head_then=head_then, window=block_window)

    def forget_reassigned(hotkey: str) -> None:
        """A hotkey that gets a uid again is no longer one whose uid was handed away."""
        if hotkey in s.hotkey_reassigned:
            del s.hotkey_reassigned[hotkey]

    async def claim_handover(env: Envelope, p: UidReassigned) -> None:
        """On the uid's partition: the operator's key, then the uid claimed for the new hotkey
        and the handover sent on to it (again, for a record delivered again)."""
        rejection = (check_signature(p, operator_key) or check_event_id(env)
                     or check_uid(p, subnet_size))
        if rejection is not None:
            await reject(s.rejected, env, rejection, metrics, signer=s.signer)
            return
        uid_key = str(p.uid)
        owner = s.uid_owner.get(uid_key)
        last = s.uid_handover.get(uid_key)
        plan = plan_handover(p, env.event_id, owner, last)
        if plan == "noop":
            metrics.replays.inc()
            return
        if plan == "claim":
            previous = owner
            s.uid_owner[uid_key] = p.hotkey
            s.uid_handover[uid_key] = {"event_id": env.event_id, "hotkey": p.hotkey,
                                       "previous": previous, "block": p.block}
        else:
            assert last is not None
            previous = last["previous"]
            metrics.replays.inc()
        handover = UidHandover(uid=p.uid, hotkey=p.hotkey, previous=previous, block=p.block,
                               source_event_id=env.event_id)
        await emit(s.claimed, handover, key=p.hotkey, source=env, stage="handover", signer=s.signer)

    @app.agent(s.registrations, name="validate_registration")
    async def validate_registration(stream: faust.StreamT) -> None:
        async for event in stream.events():
            started = time.perf_counter()
            env = await decode_or_dead_letter(event, s.deadletter, metrics,
                                              (MinerRegistered, UidReassigned),
                                              verify=s.verify, signer=s.signer, ages=s.ages)
            if env is None:
                continue
            p = env.payload
            if isinstance(p, UidReassigned):
                await claim_handover(env, p)
                metrics.seconds.observe(time.perf_counter() - started)
                continue
            uid_key = str(p.uid)
            rejection = (check_signature(p) or check_event_id(env) or check_uid(p, subnet_size)
                         or check_registration(p, s.uid_owner.get(uid_key)))
            if rejection is None:
                appended = appended_ms(event.message.timestamp, event.message.timestamp_type)
                rejection = judge_claim(chain, p.block, appended, partial(check_claimed, p))
            if rejection is not None:
                await reject(s.rejected, env, rejection, metrics, signer=s.signer)
                continue
            if s.uid_owner.get(uid_key) is None:
                s.uid_owner[uid_key] = p.hotkey
            # The same event, re-keyed by hotkey and signed by the intake: its id and payload (with
            # the miner's signature) stay the miner's.
            value = encode(env) if s.signer is None else s.signer.encode(env)
            await s.claimed.send(key=p.hotkey.encode(), value=value)
            metrics.seconds.observe(time.perf_counter() - started)

    async def refuse(env: Envelope, p: MinerRegistered | UidHandover,
                     rejection: Rejection) -> None:
        """Reject the claim and hand the uid back to its owner table (by uid)."""
        await reject(s.rejected, env, rejection, metrics, signer=s.signer)
        await emit(s.released, p, key=str(p.uid), source=env, stage="released", signer=s.signer)

    async def hold(env: Envelope, p: MinerRegistered | UidHandover) -> None:
        """The hotkey holds the uid from the event's block on: the tables, then the registry."""
        s.hotkey_uid[p.hotkey] = p.uid
        s.hotkey_registered[p.hotkey] = p.block
        forget_reassigned(p.hotkey)
        await emit(s.miners, p, key=p.hotkey, source=env, stage="registered", signer=s.signer)

    async def grant(env: Envelope, p: UidHandover) -> None:
        """On the new hotkey's partition: it takes the uid unless it holds another; then the
        previous owner's partition is told."""
        rejection = check_handover(p, s.hotkey_uid.get(p.hotkey))
        if rejection is not None:
            await refuse(env, p, rejection)
            return
        await hold(env, p)
        if p.previous is not None and p.previous != p.hotkey:
            revoked = UidRevoked(hotkey=p.previous, uid=p.uid, to=p.hotkey, block=p.block,
                                 source_event_id=p.source_event_id)
            await emit(s.claimed, revoked, key=p.previous, source=env, stage="revoke",
                       signer=s.signer)
        metrics.validated.labels(UidReassigned.model_fields["type"].default).inc()

    async def revoke(env: Envelope, p: UidRevoked) -> None:
        """On the previous owner's partition: it holds the uid no longer."""
        if not revocation_applies(s.hotkey_uid.get(p.hotkey), p.uid):
            return
        if p.hotkey in s.hotkey_uid:
            del s.hotkey_uid[p.hotkey]
        s.hotkey_reassigned[p.hotkey] = {"uid": p.uid, "block": p.block, "to": p.to}
        await emit(s.miners, p, key=p.hotkey, source=env, stage="revoked", signer=s.signer)

    @app.agent(s.claimed, name="check_hotkey")
    async def check_hotkey_agent(stream: faust.StreamT) -> None:
        async for event in stream.events():
            env = await decode_or_dead_letter(event, s.deadletter, metrics,
                                              (MinerRegistered, UidHandover, UidRevoked),
                                              verify=s.verify, signer=s.signer, ages=s.ages)
            if env is None:
                continue
            p = env.payload
            if isinstance(p, UidHandover):
                await grant(env, p)
                continue
            if isinstance(p, UidRevoked):
                await revoke(env, p)
                continue
            rejection = check_hotkey(p, s.hotkey_uid.get(p.hotkey),
                                     s.hotkey_reassigned.get(p.hotkey))
            if rejection is not None:
                await refuse(env, p, rejection)
                continue
            await hold(env, p)
            metrics.validated.labels(p.type).inc()

    @app.agent(s.released, name="release_uid")
    async def release_uid(stream: faust.StreamT) -> None:
        async for event in stream.events():
            env = await decode_or_dead_letter(event, s.deadletter, metrics,
                                              (MinerRegistered, UidHandover),
                                              verify=s.verify, signer=s.signer, ages=s.ages)
            if env is None:
                continue
            p = env.payload
            uid_key = str(p.uid)
            if s.uid_owner.get(uid_key) != p.hotkey:
                continue
            # A refused handover gives the uid back to the hotkey that held it.
            previous = p.previous if isinstance(p, UidHandover) else None
            if previous is None:
                del s.uid_owner[uid_key]
            else:
                s.uid_owner[uid_key] = previous
