"""Whisper in batches: a tiny randomly initialized checkpoint, loaded by the real transcriber,
decodes a batch as it decodes each clip alone, and the engine scores alike batched or not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from devstack.tiny.whisper import build_tiny_whisper
from scoring.asr import WhisperTranscriber
from scoring.engine import ScoringEngine
from scoring.types import ScoringResult, Submission
from tests.unit.scoring.conftest import fast_settings


@pytest.fixture(scope="module")
def whisper(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_whisper(tmp_path_factory.mktemp("whisper") / "tiny-whisper", seed=3)


def test_a_batch_decodes_as_each_clip_alone(whisper: Path) -> None:
    transcriber = WhisperTranscriber(whisper)
    rng = np.random.default_rng(5)
    clips = [((rng.standard_normal(n) * scale).astype(np.float32), rate)
             for n, scale, rate in ((8_000, 0.1, 16_000), (40_000, 0.5, 24_000),
                                    (3_000, 1.0, 16_000), (60_000, 0.05, 32_000),
                                    (16_000, 0.3, 24_000))]
    alone = [transcriber.transcribe(wave, rate) for wave, rate in clips]
    assert transcriber.transcribe_batch(clips) == alone
    assert len(set(alone)) > 1  # the clips are told apart: the comparison means something


def _score(models_root: Path, whisper: Path, batch: int) -> ScoringResult:
    engine = ScoringEngine(fast_settings(models_root, asr="whisper", asr_model_path=whisper,
                                         asr_batch_size=batch, reference_cache_budget_bytes=0))
    try:
        return engine.score(Submission(hash="18358495043599921355", repo_namespace="alice",
                                       repo_name="tiny-tts"))
    finally:
        engine.close()


def test_the_engine_scores_alike_with_whisper_batched_or_not(models_root: Path,
                                                             whisper: Path) -> None:
    one, batched = _score(models_root, whisper, 1), _score(models_root, whisper, 4)
    assert one.status == batched.status == "COMPLETED", (one.reason, batched.reason)
    assert [(s.transcription, s.wer) for s in batched.samples] == [
        (s.transcription, s.wer) for s in one.samples]
    assert batched.total_score == one.total_score
    assert one.manifest is not None and (one.manifest.asr or "").startswith("whisper")
