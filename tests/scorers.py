"""Test scorers (tests only, never production defaults): deterministic, failing and slow.

Load one in a subprocess with ``speechstream evaluator run --scorer tests.scorers:SlowScorer``.
"""

from __future__ import annotations

import hashlib
import os
import time

from schemas.events import SampleResult
from scoring.types import Report, ScoringResult, Submission

SLOW_SECONDS_ENV = "SPEECHSTREAM_TEST_SLOW_SECONDS"
SLOW_FILE_ENV = "SPEECHSTREAM_TEST_SLOW_FILE"
SAMPLES = 3


def sample_score(ce: float, wer: float, k: float = 1.0) -> float:
    """SPEC §4: ``0.5 / (1 + k * CE) + 0.5 * (1 - WER)``, clipped to [0, 1]."""
    return min(1.0, max(0.0, 0.5 / (1 + k * ce) + 0.5 * (1 - wer)))


def deterministic_result(submission: Submission) -> ScoringResult:
    """A COMPLETED result whose samples (and so total) depend only on the hash."""
    seed = int(submission.hash)
    samples = []
    for index in range(SAMPLES):
        ce = ((seed >> (8 * index)) % 400) / 100  # 0.00 … 3.99
        wer = ((seed >> (8 * index + 4)) % 100) / 100  # 0.00 … 0.99
        samples.append(SampleResult(
            index=index, text=f"sample {index} of {submission.hash}", speaker="test",
            ce=ce, wer=wer, transcription=f"sample {index}", score=sample_score(ce, wer),
        ))
    total = sum(s.score or 0.0 for s in samples) / len(samples)
    weights = hashlib.sha256(submission.repo_id.encode())
    return ScoringResult(status="COMPLETED", total_score=total, samples=samples,
                         revision=submission.revision or "main", timings={"test_s": 0.0},
                         content_hash=weights.hexdigest())


class DeterministicScorer:
    """Reports RUNNING, then scores from the hash alone."""

    def __init__(self) -> None:
        self.scored: list[str] = []

    def start(self) -> None:
        """Nothing to load."""

    def score(self, submission: Submission, report: Report) -> ScoringResult:
        """The deterministic result of ``submission``."""
        report("RUNNING", "test scoring")
        self.scored.append(submission.hash)
        return deterministic_result(submission)

    def close(self) -> None:
        """Nothing to release."""


class FailingScorer(DeterministicScorer):
    """Raises for the hashes in ``fail_hashes`` (every hash when None); scores the others."""

    def __init__(self, fail_hashes: set[str] | None = None) -> None:
        super().__init__()
        self.fail_hashes = fail_hashes

    def score(self, submission: Submission, report: Report) -> ScoringResult:
        """Report RUNNING, then raise (or score deterministically)."""
        if self.fail_hashes is None or submission.hash in self.fail_hashes:
            report("RUNNING", "about to fail")
            raise RuntimeError(f"model exploded on {submission.hash}")
        return super().score(submission, report)


class SlowScorer(DeterministicScorer):
    """Reports RUNNING, sleeps, then scores deterministically.

    The sleep is read per request: the number in the file named by ``SPEECHSTREAM_TEST_SLOW_FILE``
    if set and present, else ``SPEECHSTREAM_TEST_SLOW_SECONDS`` (default 30), so a test can
    shorten it between a kill and a restart.
    """

    def sleep_seconds(self) -> float:
        """How long the next evaluation sleeps."""
        path = os.environ.get(SLOW_FILE_ENV)
        if path and os.path.exists(path):
            with open(path, encoding="utf-8") as handle:
                return float(handle.read().strip() or 0)
        return float(os.environ.get(SLOW_SECONDS_ENV, "30"))

    def score(self, submission: Submission, report: Report) -> ScoringResult:
        """Report RUNNING, sleep, score."""
        report("RUNNING", "slow test scoring")
        time.sleep(self.sleep_seconds())
        self.scored.append(submission.hash)
        return deterministic_result(submission)


PERTURBATION = 0.05


class PerturbedTTSScorer:
    """The real TTS scorer with every COMPLETED total moved by ``PERTURBATION``: an evaluator
    that cheats (or drifts), which an audit must catch."""

    def __init__(self, device: str = "cpu") -> None:
        from consumers.tts import TTSScorer
        from speechstream.settings import ScoringSettings

        self._inner = TTSScorer(ScoringSettings(), device=device)

    def start(self) -> None:
        """The real scorer's start."""
        self._inner.start()

    def score(self, submission: Submission, report: Report) -> ScoringResult:
        """The real result, its total moved up (down when that would pass 1)."""
        result = self._inner.score(submission, report)
        if result.status != "COMPLETED" or result.total_score is None:
            return result
        total = result.total_score
        moved = total + PERTURBATION if total + PERTURBATION <= 1.0 else total - PERTURBATION
        return result.model_copy(update={"total_score": moved})

    def close(self) -> None:
        """The real scorer's close."""
        self._inner.close()
