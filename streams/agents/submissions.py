"""Agents for submissions: per-hotkey checks, then duplicates per repo, then routing."""

from __future__ import annotations

import time
from functools import partial
from typing import Any, Literal

import faust

from schemas.envelope import Envelope
from schemas.events import (
    EvaluationRequested,
    SubmissionAttested,
    SubmissionFailed,
    SubmissionPublished,
    SubmissionRejected,
)
from schemas.fields import DEFAULT_SCORING_VERSION, RejectionCode
from speechstream.exceptions import DecodeError
from speechstream.kafka.active import ActiveScoringVersion
from speechstream.kafka.records import decode_record
from streams.agents.emit import emit, reject
from streams.chain import ChainHead, appended_ms, judge_claim
from streams.deadletter import decode_or_dead_letter
from streams.metrics import StreamsMetrics
from streams.rules import (
    FREES_THE_WINDOW,
    REQUESTED,
    Rejection,
    check_event_id,
    check_signature,
    check_submission,
    dedupe,
    forget,
    remember,
    withdrawal,
)
from streams.topics import Streams


def register_agents(
    app: faust.App, s: Streams, metrics: StreamsMetrics, rate_limit_blocks: int,
    operator_key: str | None = None, scoring_version: str = DEFAULT_SCORING_VERSION,
    chain: ChainHead | None = None, active: ActiveScoringVersion | None = None,
    block_window: int | None = None,
) -> None:
    """Attach the submission agents to ``app``; ``operator_key`` (the operator's public key)
    is the only key whose attested submissions (from the REST API) are accepted; accepted
    submissions are requested for the version ``active`` says (without it,
    ``scoring_version``); ``chain`` knows the chain's head, the
    latest block a submission may claim, and the head when each submission reached the broker,
    which the claimed block may lag by at most ``block_window`` blocks (without ``chain``, or
    before a head is published, no chain bound applies)."""

    def check(p: SubmissionPublished | SubmissionAttested, head: int | None,
              head_then: int | None) -> Rejection | Literal["replay"] | None:
        hotkey = p.hotkey
        return check_submission(
            p, s.hotkey_uid.get(hotkey), s.last_accepted.get(hotkey), rate_limit_blocks,
            registered_block=s.hotkey_registered.get(hotkey), head=head,
            reassigned=s.hotkey_reassigned.get(hotkey), head_then=head_then,
            block_window=block_window,
        )

    @app.agent(s.submissions, name="validate_submission")
    async def validate_submission(stream: faust.StreamT) -> None:
        async for event in stream.events():
            started = time.perf_counter()
            env = await decode_or_dead_letter(event, s.deadletter, metrics,
                                              (SubmissionPublished, SubmissionAttested),
                                              verify=s.verify, signer=s.signer, ages=s.ages)
            if env is None:
                continue
            p = env.payload
            hotkey = p.hotkey
            verdict = check_signature(p, operator_key) or check_event_id(env)
            if verdict is None:
                appended = appended_ms(event.message.timestamp, event.message.timestamp_type)
                verdict = judge_claim(chain, p.block, appended, partial(check, p))
            if isinstance(verdict, Rejection):
                await reject(s.rejected, env, verdict, metrics, signer=s.signer)
                continue
            if verdict == "replay":
                # Already accepted: send the same (same id) accepted event again, in case the
                # first send was lost; the duplicate check downstream absorbs it.
                metrics.replays.inc()
            else:
                s.last_accepted[hotkey] = remember(s.last_accepted.get(hotkey), p.block, p.hash)
            accepted = EvaluationRequested(
                hash=p.hash, hotkey=p.hotkey, uid=s.hotkey_uid.get(hotkey),
                repo_namespace=p.repo_namespace, repo_name=p.repo_name, revision=p.revision,
                config_template=p.config_template, competition_id=p.competition_id,
                block=p.block,
                scoring_version=active.refresh() if active is not None else scoring_version,
                source_event_id=env.event_id, source_type=p.type,
            )
            await emit(s.accepted, accepted, key=p.repo, source=env, stage="accepted",
                       signer=s.signer)
            metrics.seconds.observe(time.perf_counter() - started)

    @app.agent(s.accepted, name="deduplicate")
    async def deduplicate(stream: faust.StreamT) -> None:
        async for event in stream.events():
            env = await decode_or_dead_letter(event, s.deadletter, metrics, EvaluationRequested,
                                              verify=s.verify, signer=s.signer, ages=s.ages)
            if env is None:
                continue
            p = env.payload
            repo = f"{p.repo_namespace}/{p.repo_name}"
            holder = s.repo_holder.get(repo)
            mine = {"block": p.block, "hash": p.hash, "event_id": p.source_event_id,
                    "repo": repo, "envelope": env.model_dump(mode="json")}
            decision = dedupe(holder, mine)
            if decision.kind == "replay":
                # This request already holds the repo: the record is delivered again (Faust
                # runs at least once), maybe after a crash that kept the table write but lost
                # the sends. Send them again with the same ids; every consumer is idempotent.
                assert holder is not None
                metrics.replays.inc()
                await _displace(holder.get("displaced"), env)
                await _route(env, p)
                continue
            if decision.kind == "reject":
                assert decision.rejection is not None
                await reject(s.rejected, env, decision.rejection, metrics, signer=s.signer)
                continue
            if decision.kind == "displace":
                assert decision.rejection is not None and holder is not None
                # Kept with the newcomer, so that a replay sends the displacement again too.
                mine["displaced"] = {"envelope": holder["envelope"],
                                     "code": decision.rejection.code.value,
                                     "message": decision.rejection.message}
                await _displace(mine["displaced"], env)
            s.repo_holder[repo] = mine
            await _route(env, p)
            metrics.validated.labels(SubmissionPublished.model_fields["type"].default).inc()

    def free(hotkey: str | None, block: int | None, hash_: str | None) -> None:
        """Forget one accepted submission of ``hotkey``: it holds no rate-limit window."""
        if hotkey is None or block is None or hash_ is None:
            return
        history = s.last_accepted.get(hotkey)
        kept = forget(history, block, hash_)
        if kept != (history or []):
            s.last_accepted[hotkey] = kept
            metrics.windows_freed.inc()

    @app.agent(s.rejected, name="free_rate_limit")
    async def free_rate_limit(stream: faust.StreamT) -> None:
        """A submission rejected as a duplicate (or displaced by an earlier one) after it
        passed the per-hotkey checks holds no rate-limit window: forget it. The rejections are
        keyed by hotkey, like ``last_accepted``; a record that does not decode is left to the
        sink, which dead-letters what it cannot read or may not believe (``s.verify``: only
        the intake's own rejections count here)."""
        async for event in stream.events():
            msg = event.message
            try:
                p = decode_record(event.value, msg.topic, msg.partition, msg.offset,
                                  SubmissionRejected, verify=s.verify).payload
            except DecodeError:
                continue
            if isinstance(p, SubmissionRejected) and p.code in FREES_THE_WINDOW:
                free(p.hotkey, p.block, p.hash)

    @app.agent(s.failed, name="free_failed")
    async def free_failed(stream: faust.StreamT) -> None:
        """A submission whose evaluation FAILED holds no rate-limit window (SPEC §3: "the
        previous submission that did not fail"). The evaluators publish these with the FAILED
        score, in its transaction, keyed by hotkey; this worker reads committed records only
        (``streams.transport``), so an aborted evaluation frees nothing. A record that does not
        decode, or that no evaluator signed (``s.verify``), is dead-lettered and frees nothing."""
        async for event in stream.events():
            env = await decode_or_dead_letter(event, s.deadletter, metrics, SubmissionFailed,
                                              verify=s.verify, signer=s.signer, ages=s.ages)
            if env is None:
                continue
            p = env.payload
            if isinstance(p, SubmissionFailed):
                free(p.hotkey, p.block, p.hash)

    async def _displace(displaced: dict[str, Any] | None, env: Envelope) -> None:
        """The holder ``env`` displaced, if any: its rejection (``displaced:<env id>``), and the
        withdrawal of the evaluation request it was routed with (``evaluation.cancelled``, id
        derived from the holder's and ``env``'s: a redelivery sends the same one)."""
        if displaced is None:
            return
        holder = Envelope.model_validate(displaced["envelope"])
        rejection = Rejection(RejectionCode(displaced["code"]), displaced["message"])
        await reject(s.rejected, holder, rejection, metrics, stage=f"displaced:{env.event_id}",
                     signer=s.signer)
        cancelled = withdrawal(holder, env, rejection)
        if cancelled is not None:
            await emit(s.cancellations, cancelled, key=cancelled.hash, source=holder,
                       stage=f"cancelled:{env.event_id}", signer=s.signer)
            metrics.withdrawn.inc()

    async def _route(env: Envelope, p: EvaluationRequested) -> None:
        """The evaluation request, its id derived from ``env``. The request is its submission's
        QUEUED status: no status event is sent for it (the sink writes the QUEUED row)."""
        await emit(s.requests, p, key=p.hash, source=env, stage=REQUESTED, signer=s.signer)
