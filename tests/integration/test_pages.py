"""The leaderboard pages over a real database written by the real sink writer: what each page
shows, its clips (both formats, byte ranges), the audio a retention purged, and bad input."""

from __future__ import annotations

import io
import re
from html.parser import HTMLParser

import numpy as np
import psycopg
import pytest
import soundfile as sf
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from api.app import create_app
from api.pages import word_marks
from api.settings import ApiSettings
from api.store import PostgresStore
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
from sinks.postgres import PostgresWriter
from tests.integration.browser import check_pages, served
from tests.unit.api.test_api import FakePublisher

pytestmark = pytest.mark.integration

HOTKEYS = {0: "a" * 64, 1: "b" * 64}
TEXT = "The quick brown fox jumps over the lazy dog."
HEARD = "the quick brown box jumps over lazy dog today"
SCRIPT = "<script>alert('heard')</script>"


def _clip(seconds: float, hz: float) -> tuple[np.ndarray, int]:
    t = np.arange(int(16_000 * seconds)) / 16_000
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32), 16_000


def _forged_clip(score_request_id: str, hash_: str) -> object:
    """A clip another (trusted) evaluator writes for a score that is not its own: 5 s long."""
    encoded = encode_clip(*_clip(5.0, 440))
    opus, mp3 = encoded.b64()
    return new_envelope(SampleAudio(
        hash=hash_, scoring_version="v2", evaluator="mallory",
        score_event_id=derived_event_id(score_request_id, "score:v2"),
        request_event_id=score_request_id, index=0, clip="generated",
        sample_rate=encoded.sample_rate, duration_s=encoded.duration_s, opus_b64=opus,
        mp3_b64=mp3), key=hash_, producer="t")


def _scored(uid: int, n: int, block: int, score: float, note: str | None = None) -> list:
    """A request, its score with two samples, and their clips (the events an evaluator
    writes), for submission ``n`` of ``uid``."""
    hash_ = str(1000 * (uid + 1) + n)
    request_id = f"req-{hash_}"
    request = EvaluationRequested(hash=hash_, hotkey=HOTKEYS[uid], uid=uid,
                                  repo_namespace=f"m{uid}", repo_name=f"tts-{n}", block=block,
                                  source_event_id=f"src-{hash_}")
    score_id = derived_event_id(request_id, "score:v2")
    samples = [SampleResult(index=i, text=TEXT, speaker="Jon", description="a calm voice",
                            ce=1.5, wer=0.3, transcription=HEARD, score=0.45,
                            note=note if i else None)
               for i in range(2)]
    events = [new_envelope(request, key=hash_, producer="t", event_id=request_id),
              new_envelope(ScoreComputed(hash=hash_, status="COMPLETED", total_score=score,
                                         evaluator="ev", request_event_id=request_id,
                                         samples=samples),
                           key=hash_, producer="t", event_id=score_id)]
    for i in range(2):
        for kind, seconds in (("generated", 1.0 + i), ("reference", 1.5)):
            encoded = encode_clip(*_clip(seconds, 220 + 110 * i))
            opus, mp3 = encoded.b64()
            events.append(new_envelope(SampleAudio(
                hash=hash_, scoring_version="v2", evaluator="ev", score_event_id=score_id,
                request_event_id=request_id, index=i, clip=kind,
                sample_rate=encoded.sample_rate, duration_s=encoded.duration_s,
                opus_b64=opus, mp3_b64=mp3), key=hash_, producer="t"))
    return events


class _Audio(HTMLParser):
    """The audio elements of a page and their sources; the marked words of each transcript."""

    def __init__(self) -> None:
        super().__init__()
        self.audio: list[dict[str, str | None]] = []
        self.sources: list[str] = []
        self.marks: list[tuple[str, str]] = []
        self._mark: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "audio":
            self.audio.append(dict(attrs))
        elif tag == "source":
            self.sources.append(dict(attrs)["src"] or "")
        elif tag == "mark":
            self._mark = dict(attrs)["class"]

    def handle_data(self, data: str) -> None:
        if self._mark is not None:
            self.marks.append((self._mark, data))
            self._mark = None


@pytest.fixture
def seeded(db_conninfo: str) -> str:
    """A database the sink writer filled: two uids, four scored submissions with clips (the
    oldest of uid 0 past the two kept), the minerboard and three epochs of weights."""
    events = [*_scored(0, 1, 10, 0.5), *_scored(0, 2, 20, 0.6), *_scored(0, 3, 30, 0.7),
              _forged_clip("req-2001", "2001"), *_scored(1, 1, 15, 0.9, note=SCRIPT)]
    events += [new_envelope(MinerboardUpdated(hash=h, uid=u, hotkey=HOTKEYS[u], block=b),
                            key=str(u), producer="t")
               for h, u, b in (("1003", 0, 30), ("2001", 1, 15))]
    for epoch, (w0, w1) in enumerate(((0.5, 0.5), (0.3, 0.7), (0.2, 0.8)), start=1):
        entries = [WeightEntry(uid=0, hash="1003", weight=w0, win_rate=w0),
                   WeightEntry(uid=1, hash="2001", weight=w1, win_rate=w1)]
        events.append(new_envelope(WeightsComputed.of("val", epoch, 100 * epoch, entries),
                                   key="val", producer="t"))
    writer = PostgresWriter(db_conninfo, audio_keep_per_uid=2)
    writer.start()
    try:
        for i in range(0, len(events), 7):  # in several batches, as the sink writes them
            writer.write_batch(events[i:i + 7], list(range(i, min(i + 7, len(events)))))
    finally:
        writer.close()
    return db_conninfo


@pytest.fixture
def board(seeded: str) -> TestClient:
    app = create_app(ApiSettings(), PostgresStore(seeded), FakePublisher(),
                     CollectorRegistry())
    with TestClient(app) as client:
        yield client


def test_the_leaderboard_is_the_minerboard_ranked_with_its_weights(board: TestClient) -> None:
    page = board.get("/board")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    rows = re.findall(r'<tr data-uid="(\d+)" data-hash="(\d+)">', page.text)
    minerboard = board.get("/minerboard").json()
    assert sorted(rows) == sorted((str(e["uid"]), e["hash"]) for e in minerboard)
    assert rows[0] == ("1", "2001")  # the best score first
    assert "0.9000" in page.text and "0.8000" in page.text  # its score, its latest weight
    assert "epoch 3" in page.text


def test_a_submission_page_plays_both_clips_and_marks_the_words(board: TestClient) -> None:
    page = board.get("/board/submissions/1003")
    assert page.status_code == 200
    parsed = _Audio()
    parsed.feed(page.text)
    assert len(parsed.audio) == 4  # two samples, generated and reference
    assert len(parsed.sources) == 8  # Opus and MP3 each
    assert "a calm voice" in page.text
    text, heard = word_marks(TEXT, HEARD)
    expected = ([("substitute", w.text) for w in text if w.kind == "substitute"]
                + [("delete", w.text) for w in text if w.kind == "delete"]
                + [("substitute", w.text) for w in heard if w.kind == "substitute"]
                + [("insert", w.text) for w in heard if w.kind == "insert"])
    assert sorted(parsed.marks) == sorted(expected * 2)  # in both samples
    assert ("substitute", "box") in parsed.marks and ("insert", "today") in parsed.marks
    assert ("delete", "the") in parsed.marks  # "over the lazy": not heard

    for src, element in zip(parsed.sources[::2], parsed.audio, strict=True):
        opus = board.get(src)
        assert opus.status_code == 200 and opus.headers["content-type"].startswith("audio/ogg")
        wave, rate = sf.read(io.BytesIO(opus.content))
        assert rate == 24_000
        assert abs(len(wave) / rate - float(element["data-duration"] or 0)) < 0.05
    mp3 = board.get(parsed.sources[1])
    assert mp3.headers["content-type"] == "audio/mpeg"
    ranged = board.get(parsed.sources[1], headers={"Range": "bytes=10-19"})
    assert ranged.status_code == 206 and ranged.content == mp3.content[10:20]
    assert ranged.headers["content-range"] == f"bytes 10-19/{len(mp3.content)}"
    assert board.get(parsed.sources[1], headers={"Range": "bytes=999999-"}).status_code == 416


def test_the_oldest_submissions_audio_is_purged_and_said_so(board: TestClient,
                                                            db_conninfo: str) -> None:
    with psycopg.connect(db_conninfo) as conn:
        kept = dict(conn.execute(
            "SELECT hash, bool_and(opus IS NOT NULL) FROM sample_audio GROUP BY hash"
        ).fetchall())
    assert kept == {"1001": False, "1002": True, "1003": True, "2001": True}
    page = board.get("/board/submissions/1001")
    assert page.status_code == 200 and page.text.count("audio no longer kept") == 4
    score_id = derived_event_id("req-1001", "score:v2")
    gone = board.get(f"/board/audio/{score_id}/0/generated.opus")
    assert gone.status_code == 410 and "no longer kept" in gone.text


def test_a_miner_page_and_the_weights_page(board: TestClient) -> None:
    miner = board.get("/board/miners/0")
    assert miner.status_code == 200
    assert [h for h in ("1003", "1002", "1001") if f"/board/submissions/{h}" in miner.text] \
        == ["1003", "1002", "1001"]
    assert miner.text.index("1003") < miner.text.index("1001")  # newest first
    chart = board.get("/board/miners/0/scores.svg")
    assert chart.headers["content-type"] == "image/svg+xml" and b"<svg" in chart.content
    weights = board.get("/board/weights?epochs=2")
    assert weights.status_code == 200
    assert "Epoch 2" in weights.text and "Epoch 3" in weights.text
    assert "Epoch 1<" not in weights.text
    svg = board.get("/board/weights.svg?epochs=3")
    assert b"<svg" in svg.content and b"uid 1" in svg.content


@pytest.mark.parametrize(("path", "status", "says"), [
    ("/board/submissions/9999", 404, "No submission has the hash 9999"),
    ("/board/submissions/not-a-hash", 404, "is not a submission hash"),
    ("/board/submissions/" + "9" * 30, 404, "is not a submission hash"),
    ("/board/miners/77", 404, "No miner holds uid 77"),
    ("/board/miners/4096", 404, "is not a uid"),
    ("/board/miners/-1", 404, "is not a uid"),
    ("/board/weights?epochs=0", 422, "epochs"),
    ("/board/weights?epochs=abc", 422, "epochs"),
    ("/board/audio/nope/0/generated.opus", 404, "has no generated clip 0"),
    ("/board/audio/x/0/generated.wav", 404, "A clip is"),
    ("/board/audio/x/1000/generated.opus", 404, "A clip is"),
    ("/board/audio/x/0/other.opus", 404, "A clip is"),
])
def test_bad_input_is_an_error_page(board: TestClient, path: str, status: int,
                                    says: str) -> None:
    answer = board.get(path)
    assert answer.status_code == status
    assert answer.headers["content-type"].startswith("text/html")
    assert says in answer.text


def test_in_a_real_browser(seeded: str) -> None:
    with served(seeded) as base:
        shots = check_pages(base, "seeded")
    assert set(shots) == {"leaderboard", "submission", "weights", "phone"}
    assert all(path.stat().st_size > 1000 for path in shots.values())


def test_a_clip_from_another_evaluator_neither_shows_nor_takes_the_place(
        board: TestClient) -> None:
    page = board.get("/board/submissions/2001")
    parsed = _Audio()
    parsed.feed(page.text)
    durations = [float(a["data-duration"] or 0) for a in parsed.audio]
    assert durations == [1.0, 1.5, 2.0, 1.5]  # the score's own clips, not mallory's 5 s
    score_id = derived_event_id("req-2001", "score:v2")
    served = board.get(f"/board/audio/{score_id}/0/generated.opus")
    wave, rate = sf.read(io.BytesIO(served.content))
    assert abs(len(wave) / rate - 1.0) < 0.05
    assert served.headers["x-content-type-options"] == "nosniff"


def test_what_a_transcript_says_is_shown_not_run(board: TestClient) -> None:
    page = board.get("/board/submissions/2001").text
    assert "<script" not in page
    assert "&lt;script&gt;alert(&#39;heard&#39;)&lt;/script&gt;" in page  # shown, escaped
