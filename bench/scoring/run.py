"""Benchmark: the batched scoring engine against one sample at a time on the same model, and
one submission scored end to end as an evaluator scores it.

Run: ``.venv/bin/python -m bench.scoring.run [--device cuda] [--size mini] [--samples 40]``.
Writes ``bench/results/scoring.json``. The ``end_to_end`` row scores a tiny model in an
isolated evaluation process (``scoring.isolation.run_isolated``, as ``TTSScorer`` does): the
process start, model load, reference voice, CE, generation and ASR, all timed together. The
``cold_and_warm`` rows score it several times back to back, each evaluation in a fresh process
and then in one started ahead (``settings.warm``): wall time and the engine's share of it
(reference cache off in these rows). The ``reference_cache`` row scores it twice with an empty
reference cache and once without: the hit rate of each draw and its reference phase.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.report import write_results
from consumers.tts import TTSScorer
from devstack.tiny.musicgen import build_tiny_musicgen
from scoring.engine import ScoringEngine
from scoring.isolation import run_isolated
from scoring.reference import OfflineReferenceVoice
from scoring.types import ScoringResult, Submission, silent
from speechstream.settings import ScoringSettings

RESULTS = Path(__file__).resolve().parents[1] / "results" / "scoring.json"
SUBMISSION = Submission(hash="18358495043599921355", repo_namespace="bench", repo_name="tts")


class CachedReference:
    """The offline reference voice, synthesized once per text for both runs."""

    def __init__(self) -> None:
        self.voice = OfflineReferenceVoice()
        self.cache: dict[str, tuple[np.ndarray, int]] = {}

    def synthesize(self, text: str) -> tuple[np.ndarray, int]:
        if text not in self.cache:
            self.cache[text] = self.voice.synthesize(text)
        return self.cache[text]

    def close(self) -> None:
        pass


def _run(settings: ScoringSettings, device: str, reference: CachedReference) -> ScoringResult:
    engine = ScoringEngine(settings, device, reference=reference)
    try:
        result = engine.score(SUBMISSION)
    finally:
        engine.close()
    if result.status != "COMPLETED":
        raise SystemExit(f"benchmark run FAILED: {result.failure_code}: {result.reason}")
    return result


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"


def _model_s(result: ScoringResult) -> float:
    return result.timings["ce_s"] + result.timings["generate_s"]


def _end_to_end(root: Path, device: str, samples: int) -> dict[str, Any]:
    """One submission of a tiny model scored in an isolated evaluation process, timed."""
    build_tiny_musicgen(root / "bench" / "tiny", seed=7, size="tiny")
    settings = ScoringSettings(models_root=root, n_samples=samples, max_audio_s=4.0,
                               reference_cache_budget_bytes=0)
    submission = SUBMISSION.model_copy(update={"repo_name": "tiny"})
    started = time.perf_counter()
    result = run_isolated(settings, submission, device)
    wall_s = time.perf_counter() - started
    if result.status != "COMPLETED":
        raise SystemExit(f"end-to-end run FAILED: {result.failure_code}: {result.reason}")
    return {
        "device": _device_name(device),
        "model_size": "tiny",
        "samples": samples,
        "max_audio_s": settings.max_audio_s,
        "wall_s": round(wall_s, 3),
        "seconds_per_sample": round(wall_s / samples, 3),
        "engine_s": round(result.timings["total_s"], 3),
        "process_overhead_s": round(wall_s - result.timings["total_s"], 3),
        "timings": {k: round(v, 3) for k, v in result.timings.items()},
        "total_score": result.total_score,
        "scoring_version": submission.scoring_version,
        "note": "wall_s includes the evaluation process's start (interpreter, torch import)",
    }


def _evaluations(scorer: TTSScorer, submission: Submission, n: int,
                 spaced: bool = False) -> list[dict[str, float]]:
    rows = []
    for _ in range(n):
        if spaced and scorer.pool is not None:  # the request arrives once the process is ready
            scorer.pool.wait_ready(sys.executable, 300.0)
        started = time.perf_counter()
        result = scorer.score(submission, silent)
        wall_s = time.perf_counter() - started
        if result.status != "COMPLETED":
            raise SystemExit(f"warm/cold run FAILED: {result.failure_code}: {result.reason}")
        engine_s = result.timings["total_s"]
        rows.append({"wall_s": round(wall_s, 3), "engine_s": round(engine_s, 3),
                     "engine_share": round(engine_s / wall_s, 3),
                     "load_s": round(result.timings["load_s"], 3)})
    return rows


def _cold_and_warm(root: Path, device: str, samples: int, n: int) -> dict[str, Any]:
    """``n`` evaluations of a tiny model back to back, each in a fresh process (cold), then
    each in a process started ahead (warm: the first one prepared while the scorer idled, as
    an evaluator's does between requests; the next ones prepare while the previous evaluation
    runs, on the same cores), then warm with the requests spaced so that each finds its
    process prepared (an evaluator that is not saturated)."""
    build_tiny_musicgen(root / "bench" / "tiny", seed=7, size="tiny")
    submission = SUBMISSION.model_copy(update={"repo_name": "tiny"})
    settings = ScoringSettings(models_root=root, n_samples=samples, max_audio_s=4.0,
                               reference_cache_budget_bytes=0)
    ways: dict[str, Any] = {}
    for name, warm, spaced in (("cold", False, False), ("warm", True, False),
                               ("warm_spaced", True, True)):
        scorer = TTSScorer(settings.model_copy(update={"warm": warm}), device=device)
        try:
            scorer.start()
            if scorer.pool is not None:
                scorer.pool.wait_ready(sys.executable, 300.0)
            rows = _evaluations(scorer, submission, n, spaced)
        finally:
            scorer.close()
        ways[name] = {"evaluations": rows,
                      "mean_wall_s": round(statistics.mean(r["wall_s"] for r in rows), 3),
                      "mean_engine_share": round(
                          statistics.mean(r["engine_share"] for r in rows), 3)}
    for name in ("warm", "warm_spaced"):
        ways[f"wall_ratio_{name}_to_cold"] = round(
            ways[name]["mean_wall_s"] / ways["cold"]["mean_wall_s"], 3)
    return {"device": _device_name(device), "model_size": "tiny", "samples": samples,
            "evaluations": n, **ways}


def _reference_cache(root: Path, device: str, samples: int) -> dict[str, Any]:
    """The same submission scored twice with an empty reference cache (the second draw is of
    the same prompts), then once without: the hit rate and the reference phase of each."""
    build_tiny_musicgen(root / "bench" / "tiny", seed=7, size="tiny")
    submission = SUBMISSION.model_copy(update={"repo_name": "tiny"})
    common: dict[str, Any] = {"models_root": root, "n_samples": samples, "max_audio_s": 4.0}
    with tempfile.TemporaryDirectory(prefix="speechstream-bench-refs-") as refs:
        cached = ScoringSettings(**common, reference_cache_dir=Path(refs))
        runs = {"first_draw": cached, "second_draw": cached,
                "no_cache": ScoringSettings(**common, reference_cache_budget_bytes=0)}
        rows: dict[str, Any] = {}
        for name, settings in runs.items():
            engine = ScoringEngine(settings, device)
            try:
                result = engine.score(submission)
            finally:
                engine.close()
            if result.status != "COMPLETED" or result.manifest is None:
                raise SystemExit(f"reference cache run FAILED: {result.reason}")
            hits = result.manifest.reference_cached
            rows[name] = {"hit_rate": round(sum(hits) / len(hits), 3),
                          "reference_s": round(result.timings["reference_s"], 3),
                          "total_score": result.total_score}
    rows["identical_scores"] = len({r["total_score"] for r in rows.values()}) == 1
    return {"samples": samples, **rows}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Build the model, score it batched and sequentially, check agreement, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", choices=["tiny", "small", "mini"], default="small")
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--max-audio-s", type=float, default=4.0)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--end-to-end-samples", type=int, default=8,
                        help="samples of the end-to-end row (a tiny model)")
    parser.add_argument("--warm-evaluations", type=int, default=3,
                        help="evaluations of the cold/warm rows (a tiny model)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="speechstream-bench-") as tmp:
        root = Path(tmp)
        built = time.perf_counter()
        build_tiny_musicgen(root / "bench" / "tts", seed=7, size=args.size)
        build_s = time.perf_counter() - built
        common: dict[str, Any] = {
            "models_root": root,
            "n_samples": args.samples,
            "max_audio_s": args.max_audio_s,
            "time_limit_s": 3600.0,
        }
        reference = CachedReference()
        batched = _run(
            ScoringSettings(**common, batch_size=args.batch_size), args.device, reference
        )
        sequential = _run(ScoringSettings(**common, batch_size=1), args.device, reference)
        end_to_end = _end_to_end(root, args.device, args.end_to_end_samples)
        cold_and_warm = _cold_and_warm(root, args.device, args.end_to_end_samples,
                                       args.warm_evaluations)
        reference_cache = _reference_cache(root, args.device, args.end_to_end_samples)

    assert batched.total_score is not None and sequential.total_score is not None
    ce_diff = max(
        abs((a.ce or 0.0) - (b.ce or 0.0))
        for a, b in zip(batched.samples, sequential.samples, strict=True)
    )
    same_transcripts = all(
        a.transcription == b.transcription
        for a, b in zip(batched.samples, sequential.samples, strict=True)
    )
    total_diff = abs(batched.total_score - sequential.total_score)
    assert total_diff < 1e-3, f"batched and sequential totals differ by {total_diff}"
    result = {
        "device": _device_name(args.device),
        "model_size": args.size,
        "samples": args.samples,
        "max_audio_s": args.max_audio_s,
        "batch_size": int(batched.timings["batch_size"]),
        "batched_s": round(_model_s(batched), 3),
        "sequential_s": round(_model_s(sequential), 3),
        "speedup": round(_model_s(sequential) / _model_s(batched), 2),
        "batched_end_to_end_s": round(batched.timings["total_s"], 3),
        "sequential_end_to_end_s": round(sequential.timings["total_s"], 3),
        "batched_timings": {k: round(v, 3) for k, v in batched.timings.items()},
        "sequential_timings": {k: round(v, 3) for k, v in sequential.timings.items()},
        "total_batched": batched.total_score,
        "total_sequential": sequential.total_score,
        "max_ce_diff": ce_diff,
        "same_transcriptions": same_transcripts,
        "build_s": round(build_s, 3),
        "end_to_end": end_to_end,
        "cold_and_warm": cold_and_warm,
        "reference_cache": reference_cache,
        "note": "batched_s/sequential_s time generation + teacher-forced CE (the model's work); "
        "reference synthesis is cached and ASR is identical work in both runs",
    }
    return write_results(result, args.out)


if __name__ == "__main__":
    main()
