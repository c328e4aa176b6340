"""The engine on tiny local models: reproducible, batch-invariant, failures with reasons."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from scoring.engine import ScoringEngine, target_frames
from scoring.models.musicgen import MusicgenTTS, delay_codes
from scoring.templates import get_template
from scoring.types import Submission
from tests.unit.scoring.conftest import fast_settings

ALICE = Submission(hash="18358495043599921355", repo_namespace="alice", repo_name="tiny-tts")


def test_delay_pattern_shifts_codebook_k_by_k() -> None:
    codes = torch.arange(6).reshape(2, 3)
    delayed = delay_codes(codes, pad_id=99)
    assert delayed.tolist() == [[0, 1, 2, 99], [99, 3, 4, 5]]


def test_target_frames_are_bucketed_and_capped() -> None:
    assert target_frames("short", 50.0, 8.0) == 50
    assert target_frames("x" * 1000, 50.0, 8.0) == 400


def test_adapter_batched_equals_one_at_a_time(models_root: Path) -> None:
    model = MusicgenTTS(
        models_root / "alice" / "tiny-tts", get_template("default"), torch.device("cpu")
    )
    descriptions = ["A warm voice.", "A deep male voice, slow and deliberate."]
    texts = ["Hello there.", "The library closes at eight tonight."]
    rng = np.random.default_rng(0)
    refs = [
        rng.standard_normal(8000).astype(np.float32) * 0.1,
        rng.standard_normal(16000).astype(np.float32) * 0.1,
    ]
    batched = model.teacher_forced_loss(descriptions, texts, refs)
    single = [
        model.teacher_forced_loss([d], [t], [r])[0]
        for d, t, r in zip(descriptions, texts, refs, strict=True)
    ]
    assert batched == pytest.approx(single, rel=1e-5)
    gen = model.generate(descriptions, texts, 25, seed=3)
    one = model.generate(descriptions[1:], texts[1:], 25, seed=3)
    assert gen[1].wave.shape == one[0].wave.shape == (25 * 320,)
    np.testing.assert_allclose(gen[1].wave, one[0].wave, atol=1e-5)
    model.close()


@pytest.fixture(scope="module")
def batched_result(models_root: Path):  # noqa: ANN201
    engine = ScoringEngine(fast_settings(models_root))
    try:
        return engine.score(ALICE)
    finally:
        engine.close()


def test_engine_scores_a_tiny_model(batched_result) -> None:  # noqa: ANN001
    result = batched_result
    assert result.status == "COMPLETED", result.reason
    assert 0.0 <= result.total_score <= 1.0
    assert len(result.samples) == 4
    for sample in result.samples:
        assert sample.error is None
        assert sample.ce is not None and sample.ce > 0
        assert sample.wer is not None and sample.transcription is not None
    assert result.content_hash and result.timings["generate_s"] > 0
    # Each sample's generated clip and its reference, encoded, with the voice it asked for.
    assert sorted((c.index, c.clip) for c in result.audio) == [
        (i, k) for i in range(4) for k in ("generated", "reference")]
    assert all(c.duration_s > 0 and c.sample_rate == 24_000 for c in result.audio)
    assert all(s.description for s in result.samples)
    assert result.timings["audio_s"] > 0


def test_without_keep_audio_no_clip_is_encoded(models_root: Path) -> None:
    engine = ScoringEngine(fast_settings(models_root).model_copy(update={"keep_audio": False}))
    try:
        result = engine.score(ALICE)
    finally:
        engine.close()
    assert result.status == "COMPLETED" and result.audio == [] and "audio_s" not in result.timings


def test_batched_and_sequential_scores_agree(models_root: Path, batched_result) -> None:  # noqa: ANN001
    engine = ScoringEngine(fast_settings(models_root, batch_size=1))
    sequential = engine.score(ALICE)
    engine.close()
    assert sequential.total_score == pytest.approx(batched_result.total_score, abs=1e-4)
    for a, b in zip(sequential.samples, batched_result.samples, strict=True):
        assert a.ce == pytest.approx(b.ce, rel=1e-4)
        assert a.transcription == b.transcription


def test_same_model_twice_gives_the_same_total(models_root: Path, batched_result) -> None:  # noqa: ANN001
    engine = ScoringEngine(fast_settings(models_root))
    again = engine.score(ALICE)
    engine.close()
    assert again.total_score == batched_result.total_score


def test_different_models_score_differently(models_root: Path, batched_result) -> None:  # noqa: ANN001
    engine = ScoringEngine(fast_settings(models_root))
    bob = engine.score(ALICE.model_copy(update={"repo_namespace": "bob"}))
    engine.close()
    assert bob.status == "COMPLETED"
    assert abs(bob.total_score - batched_result.total_score) > 1e-3


@pytest.mark.parametrize(
    ("update", "code"),
    [
        ({"config_template": "chatml"}, "UNKNOWN_TEMPLATE"),
        ({"repo_name": "missing"}, "REPO_NOT_FOUND"),
    ],
)
def test_failures_carry_a_code_and_reason(models_root: Path, update: dict, code: str) -> None:
    engine = ScoringEngine(fast_settings(models_root))
    result = engine.score(ALICE.model_copy(update=update))
    assert result.status == "FAILED"
    assert result.failure_code == code and result.reason


def test_time_limit_fails_the_submission(models_root: Path) -> None:
    engine = ScoringEngine(fast_settings(models_root, time_limit_s=0.001))
    result = engine.score(ALICE)
    assert result.status == "FAILED" and result.failure_code == "TIME_LIMIT"


class _FlakyReference:
    """A reference voice that fails on one text."""

    def __init__(self) -> None:
        self.calls = 0

    def synthesize(self, text: str) -> tuple[np.ndarray, int]:
        self.calls += 1
        if self.calls == 2:
            from scoring.exceptions import ReferenceVoiceError

            raise ReferenceVoiceError("service answered 503")
        return np.zeros(8000, dtype=np.float32), 16000

    def close(self) -> None:
        pass


def test_one_failing_sample_does_not_sink_the_others(models_root: Path) -> None:
    engine = ScoringEngine(fast_settings(models_root), reference=_FlakyReference())
    result = engine.score(ALICE)
    assert result.status == "COMPLETED"
    errors = [s for s in result.samples if s.error]
    assert len(errors) == 1 and "503" in errors[0].error
    assert sum(1 for s in result.samples if s.score is not None) == 3
