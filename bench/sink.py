"""The sink's ceiling: the same rows written straight from Python, COPY + one merge a batch."""

from __future__ import annotations

import secrets
import time

from schemas import EvaluationRequested, EvaluationStatusChanged, new_envelope
from sinks.postgres import PostgresSink

HK = "ab" * 32


def copy_merge_ceiling(conninfo: str, n_rows: int, batch_size: int = 5_000) -> float:
    """Rows/s written by the sink's batch writer with no Kafka in the way.

    Half the rows are evaluation requests (submissions), half QUEUED statuses, as in the
    pipeline; envelopes are built before the clock starts. Hashes are fresh on every call
    (random 20 digits), so runs against the same tables insert new rows and do not conflict.
    """
    base = 10**19 + secrets.randbelow(8 * 10**19 - n_rows)
    envelopes = []
    for i in range(n_rows // 2):
        h = str(base + i)
        req = EvaluationRequested(hash=h, hotkey=HK, uid=i % 256, repo_namespace=f"m{i}",
                                  repo_name="tts", block=10, source_event_id=f"s{i}")
        envelopes.append(new_envelope(req, key=h, producer="bench"))
        envelopes.append(new_envelope(EvaluationStatusChanged(hash=h, status="QUEUED"), key=h,
                                      producer="bench"))
    sink = PostgresSink(conninfo)
    sink.setup()
    try:
        start = time.perf_counter()
        for i in range(0, len(envelopes), batch_size):
            sink.write_batch(envelopes[i : i + batch_size])
        return len(envelopes) / (time.perf_counter() - start)
    finally:
        sink.close()
