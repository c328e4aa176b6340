"""The scoring engine: prechecks, load, draw, reference audio, CE, generation, ASR, score."""

from __future__ import annotations

import logging
import math
import os
import time
from typing import Any

import numpy as np
import torch

from schemas.events import MAX_AUDIO_BYTES, ScoreManifest
from scoring.asr import make_transcriber
from scoring.audio import encode_clip, resample
from scoring.base import ReferenceVoice, Transcriber
from scoring.batching import auto_batch_size, free_device_memory, run_batches
from scoring.exceptions import (
    ElsewhereError,
    MethodUnavailableError,
    ModelLoadError,
    PrecheckError,
    ScoringError,
    TimeLimitError,
)
from scoring.methods import SampleRun, combine, methods_for
from scoring.models import TTSModel, load_model
from scoring.prompts import clean_text, draw_samples, draw_seed, prompt_set_hash
from scoring.refcache import CachedReferenceVoice, ReferenceCache
from scoring.reference import make_reference_voice
from scoring.source import HubSource, LocalSource, ResolvedModel, make_source
from scoring.templates import get_template
from scoring.types import Report, Sample, SampleClip, ScoringResult, Submission, silent
from scoring.versions import VERSIONS, ScoringVersion
from scoring.wer import clip01, word_error_rate
from speechstream.settings import ScoringSettings

log = logging.getLogger(__name__)


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def target_frames(text: str, frame_rate: float, max_audio_s: float) -> int:
    """Frames to generate for a text: ~75 ms a character plus 0.5 s, rounded up to whole
    seconds (so samples share lengths and batch well), capped at ``max_audio_s``."""
    seconds = min(max_audio_s, float(math.ceil(0.5 + 0.075 * len(text))))
    return max(1, int(round(seconds * frame_rate)))


def generation_seed(submission: Submission) -> int:
    """The seed generation runs under: the draw's seed, folded to 31 bits."""
    return draw_seed(submission.hash, submission.scoring_version) & 0x7FFFFFFF


def _describe(part: object) -> str | None:
    describe = getattr(part, "describe", None)
    return describe() if describe is not None else type(part).__name__


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


class ScoringEngine:
    """Scores submissions one at a time on one device; setup once, score many, close once."""

    def __init__(
        self,
        settings: ScoringSettings,
        device: str = "cpu",
        *,
        source: LocalSource | HubSource | None = None,
        reference: ReferenceVoice | None = None,
        transcriber: Transcriber | None = None,
    ) -> None:
        self.settings = settings
        self.device = torch.device(device)
        self._source = source
        self._reference = reference
        self._transcriber = transcriber

    def setup(self) -> None:
        """Make torch deterministic (when the settings say so), then create the model source,
        reference voice and transcriber (idempotent).

        Deterministic algorithms are process-wide: the engine runs in its own evaluation
        process (``scoring.isolation``). On a GPU, cuBLAS needs a fixed workspace for it, set
        here before CUDA starts.
        """
        _quiet_transformers()
        if self.settings.deterministic and not torch.are_deterministic_algorithms_enabled():
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)
        if self._source is None:
            self._source = make_source(self.settings)
        if self._reference is None:
            voice = make_reference_voice(self.settings)
            budget = self.settings.reference_cache_budget_bytes
            self._reference = (CachedReferenceVoice(voice, ReferenceCache(
                self.settings.reference_cache_path, budget)) if budget else voice)
        if self._transcriber is None:
            self._transcriber = make_transcriber(self.settings, str(self.device))

    def close(self) -> None:
        """Release the reference voice and the transcriber."""
        for part in (self._reference, self._transcriber):
            if part is not None:
                part.close()
        self._reference = self._transcriber = None

    def score(self, submission: Submission, report: Report = silent) -> ScoringResult:
        """Score one submission; every understood failure is a FAILED result with its reason.

        Its scoring version is one this engine computes (``scoring.versions.unknown_version``
        is checked before an evaluation starts). ``report`` gets RUNNING once the model passed
        its prechecks; PRECHECK is the evaluator's, sent when it picked the request up.
        """
        self.setup()
        started = time.monotonic()
        result = self._score(submission, report, started)
        result.timings["total_s"] = time.monotonic() - started
        return result

    def _score(self, submission: Submission, report: Report, started: float) -> ScoringResult:
        deadline = started + self.settings.time_limit_s
        timings: dict[str, float] = {}
        resolved: ResolvedModel | None = None
        model: TTSModel | None = None
        manifest: ScoreManifest | None = None
        try:
            template = get_template(submission.config_template)
            methods = methods_for(self.settings)
            version = VERSIONS[submission.scoring_version]
            assert self._source is not None
            resolved = self._source.resolve(submission)
            timings["precheck_s"] = time.monotonic() - started
            report("RUNNING", f"evaluating {resolved.architecture}")
            t = time.monotonic()
            model = load_model(resolved.architecture, resolved.path, template, self.device)
            timings["load_s"] = time.monotonic() - t
            drawn = draw_samples(submission.hash, submission.scoring_version,
                                 self.settings.n_samples)
            manifest = self._manifest(submission, resolved, model, drawn)
            cached: dict[int, bool] = {}
            audio: list[SampleClip] = []
            runs = self._evaluate(submission, version, drawn, model, deadline, timings, cached,
                                  audio if self.settings.keep_audio else None)
            manifest = manifest.model_copy(update={
                "generation": {**manifest.generation,
                               "batch_size": int(timings.get("batch_size", 0))},
                "reference_cached": [cached.get(s.index, False) for s in drawn]})
            totals: dict[str, float] = {}
            for method in methods:
                value = method.score(runs)
                if value is not None:
                    totals[method.name] = value
            extra = {
                "samples": [r.result() for r in runs],
                "timings": timings,
                "revision": resolved.revision,
                "content_hash": resolved.content_hash,
                "manifest": manifest,
                "audio": audio,
            }
            if "ce_wer" not in totals:
                errors = {r.error for r in runs if r.error}
                return ScoringResult.failed(
                    "NO_SAMPLE_SUCCEEDED",
                    f"no sample succeeded; errors: {'; '.join(sorted(errors))[:400]}",
                    **extra,
                )
            weights = {m.name: m.weight for m in methods}
            return ScoringResult(
                status="COMPLETED",
                total_score=clip01(combine(totals, weights)),
                method_scores=totals,
                **extra,
            )
        except ElsewhereError as exc:
            return ScoringResult.failed(
                exc.code, exc.message, timings=timings, environment=exc.environment
            )
        except PrecheckError as exc:
            return ScoringResult.failed(exc.code, exc.message, timings=timings)
        except ModelLoadError as exc:
            return ScoringResult.failed("MODEL_LOAD", str(exc), timings=timings)
        except TimeLimitError as exc:
            return ScoringResult.failed("TIME_LIMIT", str(exc), timings=timings,
                                        manifest=manifest)
        except MethodUnavailableError as exc:
            return ScoringResult.failed("METHOD_UNAVAILABLE", str(exc), timings=timings,
                                        manifest=manifest)
        except (torch.cuda.OutOfMemoryError, MemoryError) as exc:
            return ScoringResult.failed("OUT_OF_MEMORY", _error(exc), timings=timings,
                                        manifest=manifest)
        except ScoringError as exc:
            return ScoringResult.failed("SCORING_ERROR", _error(exc), timings=timings,
                                        manifest=manifest)
        finally:
            if model is not None:
                model.close()
            del model
            if resolved is not None:
                resolved.evict()
            free_device_memory(self.device)

    def _manifest(self, submission: Submission, resolved: ResolvedModel, model: TTSModel,
                  drawn: list[Sample]) -> ScoreManifest:
        """What reproduces this evaluation (the evaluator id is added by the evaluator)."""
        import transformers

        settings = self.settings
        device = str(self.device)
        if self.device.type == "cuda":
            device = f"{device} ({torch.cuda.get_device_name(self.device)})"
        return ScoreManifest(
            repo_namespace=submission.repo_namespace, repo_name=submission.repo_name,
            config_template=submission.config_template, model_revision=resolved.revision,
            content_hash=resolved.content_hash, scoring_version=submission.scoring_version,
            draw_seed=draw_seed(submission.hash, submission.scoring_version),
            prompt_ids=[s.prompt_id for s in drawn], speakers=[s.speaker for s in drawn],
            prompt_set_hash=prompt_set_hash(),
            reference_voice=_describe(self._reference), asr=_describe(self._transcriber),
            generation={
                "decoding": "greedy", "seed": generation_seed(submission),
                "n_samples": settings.n_samples, "max_audio_s": settings.max_audio_s,
                "max_text_tokens": settings.max_text_tokens, "ce_k": settings.ce_k,
                "model_family": model.family,
            },
            torch=torch.__version__, transformers=transformers.__version__,
            cuda=torch.version.cuda, device=device, dtype=str(model.dtype).removeprefix("torch."),
            deterministic=torch.are_deterministic_algorithms_enabled(),
        )

    def _evaluate(
        self, submission: Submission, version: ScoringVersion, drawn: list[Sample],
        model: TTSModel, deadline: float, timings: dict[str, float],
        cached: dict[int, bool] | None = None, audio: list[SampleClip] | None = None,
    ) -> list[SampleRun]:
        """Score the drawn samples: references, cross-entropy, generation, transcription; with
        ``audio``, the clips listened to are encoded into it."""
        settings = self.settings

        def check_time() -> None:
            if time.monotonic() > deadline:
                raise TimeLimitError(f"evaluation ran past its {settings.time_limit_s:.0f} s limit")

        tokenizer: Any = model.prompt_tokenizer()
        samples = [
            s.model_copy(update={"text": clean_text(s.text, tokenizer, settings.max_text_tokens)})
            for s in drawn
        ]
        wer_reference = {
            s.index: s.text if version.wer_reference == "cleaned" else d.text
            for s, d in zip(samples, drawn, strict=True)
        }
        runs = [SampleRun(s.index, s.text, s.speaker, description=s.description) for s in samples]
        max_len = int(settings.max_audio_s * model.sample_rate)

        t = time.monotonic()
        references: dict[int, np.ndarray] = {}
        assert self._reference is not None
        for s in samples:
            check_time()
            try:
                wave, sr = self._reference.synthesize(s.text)
                if cached is not None:
                    cached[s.index] = bool(getattr(self._reference, "last_hit", False))
                references[s.index] = resample(wave, sr, model.sample_rate)[:max_len]
            except ScoringError as exc:
                runs[s.index].error = f"reference voice: {_error(exc)}"
        timings["reference_s"] = time.monotonic() - t

        n_frames = {
            s.index: target_frames(s.text, model.frame_rate, settings.max_audio_s) for s in samples
        }
        per_sample = getattr(model, "bytes_per_sample", lambda n: 256 * 1024**2)(
            max(n_frames.values())
        )
        batch_size = auto_batch_size(
            self.device, per_sample, settings.batch_size, settings.max_batch_size
        )
        timings["batch_size"] = float(batch_size)

        t = time.monotonic()
        with_ref = [s for s in samples if s.index in references]
        ces = run_batches(
            with_ref,
            lambda b: model.teacher_forced_loss(
                [s.description for s in b], [s.text for s in b], [references[s.index] for s in b]
            ),
            batch_size,
            self.device,
            check_time,
        )
        for s, ce in zip(with_ref, ces, strict=True):
            if isinstance(ce, BaseException):
                runs[s.index].error = f"cross-entropy: {_error(ce)}"
            elif not math.isfinite(ce) and version.nonfinite_ce == "drop":
                runs[s.index].error = f"cross-entropy is not finite ({ce})"
            elif not math.isfinite(ce):
                runs[s.index].ce_not_finite = True
                runs[s.index].note = (
                    f"cross-entropy is not finite ({ce}): its CE term counts as 0 "
                    f"({version.name})"
                )
            else:
                runs[s.index].ce = float(ce)
        timings["ce_s"] = time.monotonic() - t

        t = time.monotonic()
        seed = generation_seed(submission)
        todo = sorted(
            (s for s in samples if runs[s.index].error is None),
            key=lambda s: (n_frames[s.index], s.index),
        )
        for frames in sorted({n_frames[s.index] for s in todo}):
            group = [s for s in todo if n_frames[s.index] == frames]
            outs = run_batches(
                group,
                lambda b, f=frames: model.generate(
                    [s.description for s in b], [s.text for s in b], f, seed
                ),
                batch_size,
                self.device,
                check_time,
            )
            for s, out in zip(group, outs, strict=True):
                if isinstance(out, BaseException):
                    runs[s.index].error = f"generation: {_error(out)}"
                else:
                    runs[s.index].wave, runs[s.index].sample_rate = out.wave, out.sample_rate
        timings["generate_s"] = time.monotonic() - t

        t = time.monotonic()
        assert self._transcriber is not None
        todo_asr = [r for r in runs if r.wave is not None and r.error is None]
        batch = getattr(self._transcriber, "transcribe_batch", None)
        size = settings.asr_batch_size if batch is not None else 1
        for start in range(0, len(todo_asr), size):
            check_time()
            group = todo_asr[start:start + size]
            texts: list[str] | None = None
            if batch is not None and len(group) > 1:
                try:
                    texts = batch([(r.wave, r.sample_rate or model.sample_rate) for r in group])
                except ScoringError:
                    texts = None  # one at a time: a bad clip fails only itself
            for i, run in enumerate(group):
                try:
                    text = texts[i] if texts is not None else self._transcriber.transcribe(
                        run.wave, run.sample_rate or model.sample_rate)
                    run.transcription = text
                    run.wer = word_error_rate(wer_reference[run.index], text,
                                              version.wer_normalization)
                except ScoringError as exc:
                    run.error = f"transcription: {_error(exc)}"
        timings["asr_s"] = time.monotonic() - t
        if audio is not None:
            t = time.monotonic()
            audio.extend(_encode_clips(runs, references, model.sample_rate, check_time))
            timings["audio_s"] = time.monotonic() - t
        return runs


def _encode_clips(runs: list[SampleRun], references: dict[int, np.ndarray], sample_rate: int,
                  check_time: Any) -> list[SampleClip]:
    """The generated clip and the reference of each sample, encoded; a clip that cannot be
    encoded, or is over :data:`MAX_AUDIO_BYTES` in either encoding, is left out (its scores
    stand)."""
    clips: list[SampleClip] = []
    for run in runs:
        for kind, wave, rate in (("generated", run.wave, run.sample_rate or sample_rate),
                                 ("reference", references.get(run.index), sample_rate)):
            if wave is None:
                continue
            check_time()
            try:
                encoded = encode_clip(wave, rate)
            except (ValueError, RuntimeError) as exc:  # soundfile's errors are RuntimeErrors
                log.warning("sample %d: its %s clip was not kept: %s", run.index, kind, exc)
                continue
            if max(len(encoded.opus), len(encoded.mp3)) > MAX_AUDIO_BYTES:
                log.warning("sample %d: its %s clip (%d bytes) was not kept: over %d bytes",
                            run.index, kind, encoded.size, MAX_AUDIO_BYTES)
                continue
            opus, mp3 = encoded.b64()
            clips.append(SampleClip(index=run.index, clip=kind, sample_rate=encoded.sample_rate,
                                    duration_s=round(encoded.duration_s, 4), opus_b64=opus,
                                    mp3_b64=mp3))
    return clips
