"""Faust's own ceilings on this machine: a trivial agent over the records of one topic.

Run in its own process by the pipeline bench (``python -m bench.pipeline.faust_ceiling MODE
SOURCE N``): one Faust worker, the same transport and client settings as the intake worker
(``streams.app.create_app``), reads the first N records of SOURCE and

- ``consume``: does nothing with them;
- ``send``: sends each on, ``await``-ing each send (as the agents do);
- ``take``: takes them in batches of up to 500 and sends each batch on, awaiting the batch;
- ``two-hop``: sends each on, ``await``-ing each send, to a second agent that sends it on
  again: the intake worker's shape (a submission crosses two agents, the second reading what
  the first sent), with nothing else done.

It prints ``{"mode": ..., "records": N, "per_s": ...}`` (first record to last, wall clock)
and exits.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from pathlib import Path

import faust

from speechstream.settings import KafkaSettings
from streams.app import create_app
from streams.settings import StreamsSettings
from streams.worker import QuietWorker

MODES = ("consume", "send", "take", "two-hop")


def build(mode: str, source: str, n: int, kafka: KafkaSettings) -> tuple[faust.App, dict]:
    streams = StreamsSettings(app_id=f"faust-ceiling-{mode}-{uuid.uuid4().hex[:6]}",
                              data_dir=f"/tmp/faust-ceiling-{uuid.uuid4().hex[:6]}",
                              web_enabled=False)
    Path(streams.data_dir).mkdir(parents=True, exist_ok=True)
    app = create_app(kafka, streams)
    src = app.topic(source, value_serializer="raw", key_serializer="raw")
    out = app.topic(f"{source}.ceiling-{mode}", value_serializer="raw", key_serializer="raw",
                    partitions=4)
    state: dict = {"seen": 0, "first": None, "last": None, "done": False}

    def seen(k: int) -> None:
        now = time.perf_counter()
        if state["first"] is None:
            state["first"] = now
        state["seen"] += k
        state["last"] = now
        state["done"] = state["seen"] >= n

    if mode == "consume":
        @app.agent(src)
        async def consume(stream: faust.StreamT) -> None:
            async for _ in stream:
                seen(1)
    elif mode == "two-hop":
        mid = app.topic(f"{source}.ceiling-{mode}-mid", value_serializer="raw",
                        key_serializer="raw", partitions=4)

        @app.agent(src)
        async def first(stream: faust.StreamT) -> None:
            async for event in stream.events():
                await mid.send(key=event.key, value=event.value)

        @app.agent(mid)
        async def second(stream: faust.StreamT) -> None:
            async for event in stream.events():
                await out.send(key=event.key, value=event.value)
                seen(1)
    elif mode == "send":
        @app.agent(src)
        async def send(stream: faust.StreamT) -> None:
            async for event in stream.events():
                await out.send(key=event.key, value=event.value)
                seen(1)
    else:
        @app.agent(src)
        async def take(stream: faust.StreamT) -> None:
            async for values in stream.take(500, within=0.05):
                await asyncio.gather(*(out.send(value=v) for v in values))
                seen(len(values))
    return app, state


def main(argv: list[str]) -> None:
    mode, source, n = argv[0], argv[1], int(argv[2])
    if mode not in MODES:
        raise SystemExit(f"mode must be one of {MODES}")
    app, state = build(mode, source, n, KafkaSettings())
    worker = QuietWorker(app, loglevel="WARNING", quiet=True)

    async def stop_when_done() -> None:
        while not state["done"] and not worker.should_stop:
            await asyncio.sleep(0.05)
        await worker.stop()

    watcher = worker.loop.create_task(stop_when_done())
    try:
        worker.loop.run_until_complete(worker.start())
    finally:
        watcher.cancel()
        worker.stop_and_shutdown()
    span = (state["last"] or 0) - (state["first"] or 0)
    print(json.dumps({"mode": mode, "records": state["seen"],
                      "per_s": round(state["seen"] / span) if span > 0 else None}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
