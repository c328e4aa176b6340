"""The leaderboard pages at 256 uids, and the bytes a submission's clips take.

Run: ``.venv/bin/python -m bench.pages`` (needs ``DATABASE_URL``, a role that may create
databases). Fills a fresh database through the sink's writer: 256 uids, each with two scored
submissions of 40 samples (the default draw), the newest with its 80 clips (1 s each: what a
page reads of a clip is its size, not its bytes), and 10 epochs of weights. Then times each
page through the real app (in-process, over the real database), side by side with
``GET /minerboard``'s JSON in the same rounds, and reports medians and ratios to it. Separately,
encodes 40 drawn prompts read by the offline reference voice (as the generated clip and as the
reference) to measure the bytes a submission's clips take at the evaluator's bitrates. Writes
``bench/results/pages.json``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from api.app import create_app
from api.settings import ApiSettings
from api.store import PostgresStore
from bench.database import fresh_database
from bench.report import write_results
from schemas.envelope import derived_event_id, new_envelope
from schemas.events import (
    EvaluationRequested,
    MinerboardUpdated,
    SampleAudio,
    SampleResult,
    ScoreComputed,
    WeightEntry,
    WeightsComputed,
)
from scoring.audio import encode_clip
from scoring.prompts import draw_samples
from scoring.reference import make_reference_voice
from sinks.postgres import PostgresWriter
from speechstream.settings import DatabaseSettings, ScoringSettings

RESULTS = Path(__file__).parent / "results" / "pages.json"
UIDS = 256
SAMPLES = 40
EPOCHS = 10


def _hotkey(uid: int) -> str:
    return f"{uid:064x}"


def _submission(uid: int, n: int, clips: tuple[str, str] | None, duration_s: float) -> list:
    hash_ = str(10_000 * (uid + 1) + n)
    request_id = f"req-{hash_}"
    score_id = derived_event_id(request_id, "score:v2")
    text = "A sentence the model was asked to speak, about as long as the prompts are."
    samples = [SampleResult(index=i, text=text, speaker="Jon", description="a calm voice",
                            ce=1.2, wer=0.25, transcription=text.lower().replace("long", "song"),
                            score=0.5) for i in range(SAMPLES)]
    out = [
        new_envelope(EvaluationRequested(
            hash=hash_, hotkey=_hotkey(uid), uid=uid, repo_namespace=f"m{uid}",
            repo_name=f"tts-{n}", block=100 + n, source_event_id=f"s-{hash_}"),
            key=hash_, producer="bench", event_id=request_id),
        new_envelope(ScoreComputed(hash=hash_, status="COMPLETED",
                                   total_score=(uid % 97) / 100 + n / 1000, evaluator="ev",
                                   request_event_id=request_id, samples=samples),
                     key=hash_, producer="bench", event_id=score_id),
    ]
    if clips is not None:
        out += [new_envelope(SampleAudio(
            hash=hash_, scoring_version="v2", evaluator="ev", score_event_id=score_id,
            request_event_id=request_id, index=i, clip=kind, sample_rate=24_000,
            duration_s=duration_s, opus_b64=clips[0], mp3_b64=clips[1]),
            key=hash_, producer="bench") for i in range(SAMPLES)
            for kind in ("generated", "reference")]
    return out


def fill(conninfo: str) -> str:
    """The database as the bench reads it; the hash of one submission with clips."""
    t = [x / 24_000 for x in range(24_000)]
    import numpy as np

    one = encode_clip(np.sin(np.array(t, dtype=np.float32) * 2 * np.pi * 220) * 0.3, 24_000)
    clips = one.b64()
    writer = PostgresWriter(conninfo)
    writer.start()
    try:
        for uid in range(UIDS):
            events = [*_submission(uid, 1, None, one.duration_s),
                      *_submission(uid, 2, clips, one.duration_s),
                      new_envelope(MinerboardUpdated(hash=str(10_000 * (uid + 1) + 2), uid=uid,
                                                     hotkey=_hotkey(uid), block=102),
                                   key=str(uid), producer="bench")]
            writer.write_batch(events)
        for epoch in range(1, EPOCHS + 1):
            entries = [WeightEntry(uid=u, weight=1 / UIDS, win_rate=0.5) for u in range(UIDS)]
            writer.write_batch([new_envelope(WeightsComputed.of("val", epoch, epoch * 360,
                                                                entries),
                                             key="val", producer="bench")])
    finally:
        writer.close()
    return str(10_000 * (UIDS // 2 + 1) + 2)


def time_pages(conninfo: str, hash_: str, rounds: int) -> dict[str, dict[str, float]]:
    """Median seconds of each page over ``rounds``, each round every page once in turn."""
    app = create_app(ApiSettings(), PostgresStore(conninfo), _NoPublisher(),
                     CollectorRegistry())
    paths = {
        "minerboard JSON (baseline)": "/minerboard",
        "leaderboard": "/board",
        "submission (40 samples, 80 clips)": f"/board/submissions/{hash_}",
        "miner": f"/board/miners/{UIDS // 2}",
        "weights (10 epochs)": "/board/weights",
        "weights chart (SVG, drawn once, then cached)": "/board/weights.svg",
    }
    times: dict[str, list[float]] = {name: [] for name in paths}
    sizes: dict[str, int] = {}
    with TestClient(app) as client:
        started = time.perf_counter()
        assert client.get("/board/weights.svg?epochs=9").status_code == 200
        first_chart_s = time.perf_counter() - started  # matplotlib imported, then drawn
        started = time.perf_counter()
        assert client.get("/board/weights.svg?epochs=8").status_code == 200
        drawn_s = time.perf_counter() - started
        for path in paths.values():  # warm: the pool, the templates, matplotlib
            assert client.get(path).status_code == 200, path
        for r in range(rounds):
            order = list(paths.items())
            order = order[r % len(order):] + order[:r % len(order)]
            for name, path in order:
                started = time.perf_counter()
                answer = client.get(path)
                times[name].append(time.perf_counter() - started)
                sizes[name] = len(answer.content)
    base = statistics.median(times["minerboard JSON (baseline)"])
    times["weights chart, drawn (once)"] = [drawn_s]
    times["weights chart, first of the process (imports matplotlib)"] = [first_chart_s]
    sizes["weights chart, drawn (once)"] = sizes["weights chart, first of the process "
                                                 "(imports matplotlib)"] = 0
    return {name: {"median_ms": round(statistics.median(v) * 1000, 2),
                   "ratio_to_minerboard": round(statistics.median(v) / base, 2),
                   "bytes": sizes[name]} for name, v in times.items()}


def clip_bytes() -> dict[str, float]:
    """Bytes of one submission's clips: 40 drawn prompts read by the offline reference voice,
    kept twice (as the generated clip and as the reference), each as Opus and MP3."""
    settings = ScoringSettings()
    voice = make_reference_voice(settings)
    opus = mp3 = seconds = 0.0
    for sample in draw_samples("12345", "v2", SAMPLES):
        wave, rate = voice.synthesize(sample.text)
        clip = encode_clip(wave[:int(settings.max_audio_s * rate)], rate)
        opus += len(clip.opus)
        mp3 += len(clip.mp3)
        seconds += clip.duration_s
    return {"samples": SAMPLES, "seconds_per_clip": round(seconds / SAMPLES, 2),
            "opus_kbit_s": round(opus * 8 / seconds / 1000, 1),
            "mp3_kbit_s": round(mp3 * 8 / seconds / 1000, 1),
            "bytes_per_submission": int(2 * (opus + mp3)),
            "event_bytes_per_submission_base64": int(2 * (opus + mp3) * 4 / 3)}


class _NoPublisher:
    def start(self) -> None: ...

    def close(self) -> None: ...


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    conninfo = fresh_database(DatabaseSettings().conninfo, "speechstream_bench_pages")
    started = time.perf_counter()
    hash_ = fill(conninfo)
    fill_s = time.perf_counter() - started
    result = {
        "uids": UIDS, "samples": SAMPLES, "epochs": EPOCHS, "rounds": args.rounds,
        "fill_s": round(fill_s, 1),
        "pages": time_pages(conninfo, hash_, args.rounds),
        "clips": clip_bytes(),
        "note": "medians on a shared 2-core machine, in-process (no network); ratios to "
                "GET /minerboard measured in the same rounds",
    }
    write_results(result, RESULTS)
    for name, row in result["pages"].items():
        print(f"{name:36} {row['median_ms']:8.1f} ms  ×{row['ratio_to_minerboard']:<6} "
              f"{row['bytes']:>9} B")
    print(result["clips"])


if __name__ == "__main__":
    main()
