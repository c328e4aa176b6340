"""Scoring versions: v2 decides the number as the original does, v1 stays as it was.

The expected values are the original system's (impel-intelligence/dippy-speech-subnet, scoring
at cf454bb): its ``calculate_wer`` normalizes both texts with jiwer's ``Compose([
RemovePunctuation(), ToLowerCase(), Strip()])`` and compares the transcription with the text
as drawn; its ``apply_weights`` gives ``0.5 / (1 + CE)`` for the CE half, 0 for ``CE = inf``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from schemas.codec import decode, encode
from schemas.envelope import new_envelope
from schemas.events import ScoringActivated
from schemas.fields import SCORING_VERSIONS
from scoring import engine as engine_module
from scoring.engine import ScoringEngine, generation_seed
from scoring.models.musicgen import MusicgenTTS
from scoring.prompts import draw_samples, draw_seed, prompt_set, prompt_set_hash, speakers
from scoring.types import Sample, Submission
from scoring.versions import DEFAULT_SCORING_VERSION, VERSIONS, known_versions
from scoring.wer import normalize_for_wer, sample_score, word_error_rate
from tests.unit.scoring.conftest import fast_settings

ALICE = Submission(hash="18358495043599921355", repo_namespace="alice", repo_name="tiny-tts")


# -- WER: the original's normalization (v2) and ours (v1) ------------------------------------

@pytest.mark.parametrize(
    ("reference", "hypothesis", "original", "v1"),
    [
        # Unicode punctuation goes in the original: the curly apostrophe is no error.
        ("Don't stop, we're close.", "Don’t stop, we’re close.", 0.0, 0.5),
        # Symbols stay in the original: "$5" is not "5", and "+" is a word.
        ("The price is $5 + tax.", "the price is 5 tax", 1 / 3, 0.0),
        # Dashes, ellipses and quotes are punctuation (Unicode category P).
        ("“Wait” — she said…", "wait she said", 0.0, 0.75),
        ("Hello, World!", "hello world", 0.0, 0.0),
        ("the cat sat", "the cat", 1 / 3, 1 / 3),
        ("50% off", "50 off", 0.0, 0.0),  # "%" is Unicode punctuation (Po), "+" a symbol (Sm)
    ],
)
def test_wer_matches_the_original_in_v2_and_keeps_v1(
    reference: str, hypothesis: str, original: float, v1: float
) -> None:
    assert word_error_rate(reference, hypothesis, "jiwer") == pytest.approx(original)
    assert word_error_rate(reference, hypothesis, "ascii") == pytest.approx(v1)


def test_the_original_normalization_keeps_symbols_and_drops_unicode_punctuation() -> None:
    assert normalize_for_wer("  The price is $5 + tax.  ", "jiwer") == "the price is $5 + tax"
    assert normalize_for_wer("Don’t — stop…", "jiwer") == "dont stop"
    assert normalize_for_wer("  Hello, World!  It's ME.  ", "ascii") == "hello world its me"


# -- the sample score and SPEC §4's reference values --------------------------------------------

@pytest.mark.parametrize(
    ("ce", "wer", "expected"),
    [
        (0.0, 0.0, 1.0),
        (1.0, 0.0, 0.75),
        (2.5, 0.1, 0.5928571428571429),
        (0.7, 1.4, 0.0941176470588),
        (math.inf, 0.2, 0.4),  # the original: 0.5 / (1 + inf) = 0, the WER half counts
        (math.nan, 0.2, 0.4),  # SPEC §4: a CE that is not finite has a CE term of 0
    ],
)
def test_sample_score_reference_values(ce: float, wer: float, expected: float) -> None:
    assert sample_score(ce, wer) == pytest.approx(expected, abs=1e-9)


def test_versions_are_known_and_v2_is_the_default() -> None:
    assert known_versions() == ["v1", "v2"]
    assert DEFAULT_SCORING_VERSION == "v2"
    assert VERSIONS["v1"].nonfinite_ce == "drop" and VERSIONS["v2"].nonfinite_ce == "zero_term"


def test_an_activation_names_only_a_version_the_engine_computes() -> None:
    assert tuple(known_versions()) == SCORING_VERSIONS
    assert ScoringActivated(scoring_version="v1").scoring_version == "v1"
    with pytest.raises(ValidationError):
        ScoringActivated(scoring_version="v9")
    forged = new_envelope(ScoringActivated(scoring_version="v2"), key="active", producer="t")
    raw = encode(forged).replace(b'"v2"', b'"v9"')
    with pytest.raises(ValueError, match="scoring_version"):
        decode(raw)


# -- the engine: which text is compared, non-finite CE, the manifest ---------------------------

class _SayWhatWasSpoken:
    """A transcriber that hears exactly the cleaned text each clip was generated from."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def transcribe(self, wave: np.ndarray, sample_rate: int) -> str:
        return self.texts.pop(0)

    def describe(self) -> str:
        return "echo 1.0"

    def close(self) -> None:
        pass


def _symbol_draw(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every sample draws a text whose symbols the cleaning removes before it is spoken."""

    def draw(hash_: str, version: str, n: int) -> list[Sample]:
        return [s.model_copy(update={"text": "The price is $5 + tax."})
                for s in draw_samples(hash_, version, n)]

    monkeypatch.setattr(engine_module, "draw_samples", draw)


@pytest.mark.parametrize(("version", "wer"), [("v1", 0.0), ("v2", 1 / 3)])
def test_v2_compares_the_transcription_with_the_text_as_drawn(
    models_root: Path, monkeypatch: pytest.MonkeyPatch, version: str, wer: float
) -> None:
    _symbol_draw(monkeypatch)
    ears = _SayWhatWasSpoken()
    ears.texts = ["the price is 5 tax"] * 4  # what a perfect model says of the cleaned text
    engine = ScoringEngine(fast_settings(models_root), transcriber=ears)
    result = engine.score(ALICE.model_copy(update={"scoring_version": version}))
    engine.close()
    assert result.status == "COMPLETED", result.reason
    assert [s.text for s in result.samples] == ["The price is 5  tax."] * 4  # spoken (cleaned)
    assert [s.wer for s in result.samples] == pytest.approx([wer] * 4)


def _infinite_ce_on_first(monkeypatch: pytest.MonkeyPatch, value: float) -> None:
    """The first sample of every CE batch gets ``value`` (4 samples make one batch on CPU)."""
    real = MusicgenTTS.teacher_forced_loss

    def loss(self: MusicgenTTS, descriptions: list[str], texts: list[str],
             refs: list[np.ndarray]) -> list[float]:
        return [value, *real(self, descriptions, texts, refs)[1:]]

    monkeypatch.setattr(MusicgenTTS, "teacher_forced_loss", loss)


@pytest.mark.parametrize("value", [math.inf, math.nan])
def test_a_non_finite_ce_is_kept_in_v2_and_dropped_in_v1(
    models_root: Path, monkeypatch: pytest.MonkeyPatch, value: float
) -> None:
    _infinite_ce_on_first(monkeypatch, value)
    engine = ScoringEngine(fast_settings(models_root))
    v1 = engine.score(ALICE.model_copy(update={"scoring_version": "v1"}))
    v2 = engine.score(ALICE.model_copy(update={"scoring_version": "v2"}))
    engine.close()
    dropped = [s for s in v1.samples if s.error]
    assert len(dropped) == 1 and "not finite" in (dropped[0].error or "")
    assert sum(1 for s in v1.samples if s.score is not None) == 3
    kept = [s for s in v2.samples if s.note]
    assert len(kept) == 1 and kept[0].error is None and kept[0].ce is None
    assert "counts as 0" in (kept[0].note or "")
    assert kept[0].wer is not None and kept[0].score == pytest.approx(0.5 * (1 - kept[0].wer))
    assert all(s.score is not None for s in v2.samples)
    assert v2.total_score == pytest.approx(
        sum(min(1.0, max(0.0, s.score or 0.0)) for s in v2.samples) / 4)


def test_the_manifest_records_what_reproduces_the_score(models_root: Path) -> None:
    engine = ScoringEngine(fast_settings(models_root))
    result = engine.score(ALICE)
    engine.close()
    m = result.manifest
    assert m is not None
    drawn = draw_samples(ALICE.hash, ALICE.scoring_version, 4)
    assert (m.repo_namespace, m.repo_name, m.config_template) == ("alice", "tiny-tts", "default")
    assert m.scoring_version == "v2" and m.draw_seed == draw_seed(ALICE.hash, "v2")
    assert m.prompt_ids == [s.prompt_id for s in drawn]
    assert [prompt_set()[i]["text"] for i in m.prompt_ids] == [s.text for s in drawn]
    assert m.speakers == [s.speaker for s in drawn]
    assert {s["name"] for s in speakers()} >= set(m.speakers)
    assert m.prompt_set_hash == prompt_set_hash() and len(m.prompt_set_hash) == 64
    assert m.content_hash == result.content_hash and m.model_revision == result.revision
    assert m.reference_voice and m.reference_voice.split()[0] in ("flite", "espeak-ng")
    assert m.asr and m.asr.startswith("pocketsphinx ")
    assert m.torch and m.transformers and m.device == "cpu" and m.dtype == "float32"
    assert m.deterministic is True
    assert m.generation["decoding"] == "greedy"
    assert m.generation["seed"] == generation_seed(ALICE)
    assert m.generation["n_samples"] == 4 and m.generation["batch_size"] >= 1
