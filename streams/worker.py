"""The intake worker as a service: the Faust app with its topics, tables and agents, run until
the stop event is set (``speechstream streams worker``)."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from collections.abc import Iterable
from typing import Any

import faust

from schemas.topics import INTAKE_TABLES, changelog_specs
from speechstream.chainhead import JumpLimit
from speechstream.diskkeys import sweep_abandoned
from speechstream.kafka.active import ActiveScoringVersion
from speechstream.kafka.admin import create_topics
from speechstream.kafka.lag import AgeObserved, Lag, Progress
from speechstream.kafka.records import Verify, expect_dead_letters
from speechstream.monitoring import Health
from speechstream.settings import KafkaSettings
from speechstream.signer import Signer
from streams.agents import registrations, submissions
from streams.ages import RecordAges
from streams.app import STATE_PREFIX, create_app, state_dir
from streams.chain import ChainHead
from streams.deadletter import CONSUMER_NAME as DEAD_LETTER_CONSUMER
from streams.metrics import StreamsMetrics
from streams.recovery_watch import RecoveryWatch, watch_recovery
from streams.settings import StreamsSettings
from streams.topics import declare
from streams.transport import worker_lag

STOP_CHECK_S = 0.1
ACTIVE_VERSION_READER = "speechstream-intake-active-version"


def build_app(
    kafka: KafkaSettings, streams: StreamsSettings, metrics: StreamsMetrics,
    chain: ChainHead | None = None, active: ActiveScoringVersion | None = None, *,
    verify: Verify | None = None, signer: Signer | None = None, ages: RecordAges | None = None,
) -> faust.App:
    """The Faust app with every topic, table and agent of the intake worker; ``chain`` bounds
    the blocks registrations and submissions may claim; ``active`` says which scoring version
    new submissions are requested for (without it, ``streams.scoring_version``); the agents
    count only the records ``verify`` lets count, sign what they write with ``signer`` and
    observe each record's age in ``ages``."""
    app = create_app(kafka, streams)
    declared = declare(app, kafka, streams, verify=verify, signer=signer, ages=ages)
    registrations.register_agents(app, declared, metrics, streams.operator_key,
                                  streams.subnet_size, chain, streams.block_window)
    submissions.register_agents(app, declared, metrics, streams.rate_limit_blocks,
                                streams.operator_key, streams.scoring_version, chain,
                                active, streams.block_window)
    return app


class QuietWorker(faust.Worker):
    """A Faust worker stopped by the service's stop event, not by signal handlers of its own:
    the service runner owns SIGTERM and SIGINT; and without Faust's terminal spinner, which
    sets the root logger to DEBUG (so that it spins on every record): every ``log.debug`` of
    Faust and aiokafka, several per record sent, would build a log record to be dropped."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.spinner = None

    def install_signal_handlers(self) -> None:
        """Leave the process's signal handlers to the service runner."""


class IntakeWorker:
    """Validates registrations and submissions and routes them (SPEC §3), one Faust worker.

    The Faust app is built in :meth:`start`, after the tables' changelog topics exist; it runs
    in this thread's event loop until the stop event is set.
    """

    name = "intake"

    def __init__(
        self, kafka: KafkaSettings, settings: StreamsSettings, metrics: StreamsMetrics, *,
        verify: Verify | None = None, signer: Signer | None = None,
    ) -> None:
        self._kafka = kafka
        self._verify = verify
        self._signer = signer
        self._settings = settings
        self._metrics = metrics
        expect_dead_letters(metrics.dead_letters, DEAD_LETTER_CONSUMER)
        self._app: faust.App | None = None
        self._worker: QuietWorker | None = None
        self._chain: ChainHead | None = None
        self._active: ActiveScoringVersion | None = None
        self._watch: RecoveryWatch | None = None
        self._ages = RecordAges(self.name)
        self._progress = Progress(settings.progress_window_s)
        self._changelogs = {kafka.topics.changelog(settings.app_id, table)
                            for table in INTAKE_TABLES}

    def start(self) -> None:
        """Create the changelog topics, then the app (nothing consumes before :meth:`run`)."""
        states = state_dir(self._kafka, self._settings).parent
        states.mkdir(parents=True, exist_ok=True)
        # The table files of workers killed before they could remove them.
        sweep_abandoned(states, STATE_PREFIX)
        # Faust would create its changelogs itself, lazily and without waiting for them: a table
        # written before the broker has their partitions fails with PartitionsMismatch.
        create_topics(self._kafka, changelog_specs(self._settings.app_id))
        self._chain = ChainHead(
            self._kafka, limit=JumpLimit(self._settings.chain_jump_blocks),
            on_refused=lambda _block: self._metrics.heads_refused.inc(), verify=self._verify)
        for consumer in self._chain.consumers():
            consumer.record_age = self._ages.record_age
        self._chain.start()
        self._active = ActiveScoringVersion(self._kafka, self._settings.scoring_version,
                                            name=ACTIVE_VERSION_READER, verify=self._verify)
        self._active.start()
        self._app = build_app(self._kafka, self._settings, self._metrics, self._chain,
                              self._active, verify=self._verify, signer=self._signer,
                              ages=self._ages)
        self._watch = watch_recovery(self._app, self._settings.recovery_stall_s)

    def run(self, stop: threading.Event) -> None:
        """Run the Faust worker until ``stop`` is set; an agent's crash is raised here."""
        assert self._app is not None, "call start() first"
        worker = self._worker = QuietWorker(self._app, loglevel=self._settings.log_level,
                                            quiet=True)

        async def stop_when_asked() -> None:
            while not stop.is_set() and not worker.should_stop:
                await asyncio.sleep(STOP_CHECK_S)
            await worker.stop()

        watcher = worker.loop.create_task(stop_when_asked())
        try:
            worker.loop.run_until_complete(worker.start())
        finally:
            watcher.cancel()
            worker.stop_and_shutdown()

    def close(self) -> None:
        """Close the chain-head and active-version readers (the worker's shutdown closed its
        own clients), and remove the tables' files (rebuilt from the changelogs at a start)."""
        if self._chain is not None:
            self._chain.close()
        if self._active is not None:
            self._active.close()
        if self._app is not None:
            shutil.rmtree(self._app.conf.datadir, ignore_errors=True)

    def lag(self) -> Iterable[Lag]:
        """The lag of its Faust consumer (group: the app id) and of its chain-head reader."""
        app = self._app
        if app is not None:
            group = app.conf.id
            for topic, partition, records in worker_lag(app):
                yield self.name, group, topic, partition, records
        if self._chain is not None:
            yield from self._chain.lag()

    def consumers(self) -> list[AgeObserved]:
        """The ages its agents observe (Faust's consumer is not an ``EventConsumer``: they take
        the records), also given to its chain-head reader at :meth:`start`."""
        return [self._ages]

    def health(self, now: float | None = None) -> Health:
        """Healthy while the Faust worker runs, no agent has crashed, its tables' recovery is
        not stalled (``recovery_stall_s`` without a changelog record) and it makes progress:
        not while the records waiting on its topics (changelogs aside) have grown over
        ``progress_window_s`` and it committed nothing in that time."""
        worker = self._worker
        if worker is None or not worker.started:
            return Health(False, "starting")
        state = worker.state
        app_state = self._app.state if self._app is not None else "init"
        details = {"worker": state, "app": app_state}
        if app_state == "crashed" or state == "crashed":
            return Health(False, "crashed", details)
        if state != "running":
            return Health(False, "stopped", details)
        watch = self._watch
        stalled = watch.stalled if watch is not None else None
        if stalled is not None:
            return Health(False, "recovery stalled", {**details, "waiting": stalled})
        committed_at = getattr(self._app.consumer, "committed_at", None)
        if committed_at is not None:
            self._progress.committed(committed_at)
        now = time.monotonic() if now is None else now
        details["last_commit_s_ago"] = (None if committed_at is None
                                        else round(now - committed_at, 1))
        waiting = sum(records for topic, _, records in worker_lag(self._app)
                      if topic not in self._changelogs)
        not_progressing = self._progress.stalled(waiting, now)
        if not_progressing is not None:
            return Health(False, "not progressing", {**details, "reason": not_progressing})
        return Health(True, "ok", details)
