"""The leaderboard you can listen to: server-rendered pages (Jinja2 templates, no build step, no
script but none), the clips' audio, and the charts (matplotlib SVG, drawn here).

- ``/board``: the minerboard ranked, with each uid's win rate and weight of the last epoch;
- ``/board/submissions/{hash}``: a submission's score, manifest and samples, each with its text,
  its voice, both clips (generated and reference) in an audio player, the transcript with the
  words that differ from the text marked (jiwer's alignment), CE, WER and score;
- ``/board/miners/{uid}``: a uid's submissions over time;
- ``/board/weights``: the last epochs' weights per uid, as a chart and a table.

Unknown or malformed hashes, uids and clips are 404 pages; a purged clip is a 410 page saying it
is no longer kept; the pages need PostgreSQL (a store without the board answers 503).
"""

from __future__ import annotations

import io
import re
import string
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import jiwer
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from api.board import CLIPS, AudioFormat, Board, EpochWeights, MinerView
from schemas.fields import MAX_SAMPLES, MAX_UIDS

if TYPE_CHECKING:
    from matplotlib.axes import Axes

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
static = StaticFiles(directory=HERE / "static")
pages = APIRouter(prefix="/board", include_in_schema=False)

MEDIA_TYPES: dict[str, str] = {"opus": "audio/ogg; codecs=opus", "mp3": "audio/mpeg"}
_HASH = re.compile(r"^[0-9]{1,20}$")
_EVENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_PUNCT = re.compile(f"[{re.escape(string.punctuation)}]")
MAX_EPOCHS = 100
MAX_CHART_UIDS = 12
"""The weights chart draws the uids of the highest latest weights; the table lists them all."""


class PageError(Exception):
    """A page that cannot be shown: its status, a title and what to do."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


def error_page(request: Request, status: int, title: str, message: str) -> HTMLResponse:
    """The error page (404, 410, 422, 503) with its status."""
    return templates.TemplateResponse(request, "error.html", {
        "title": title, "message": message, "status": status}, status_code=status)


async def page_error(request: Request, exc: Exception) -> HTMLResponse:
    """The handler of :class:`PageError`."""
    assert isinstance(exc, PageError)
    return error_page(request, exc.status, exc.title, exc.message)


def _board(request: Request) -> Board:
    board = getattr(request.app.state.store, "board", None)
    if not isinstance(board, Board):
        raise PageError(503, "Pages unavailable", "The pages read PostgreSQL; this API's store "
                        "has no leaderboard.")
    return board


def _canonical_hash(value: str) -> str:
    if not _HASH.match(value):
        raise PageError(404, "No such submission",
                        f"{value[:40]!r} is not a submission hash (1 to 20 decimal digits).")
    return str(int(value))


# -- words ----------------------------------------------------------------------------------


Kind = Literal["equal", "substitute", "delete", "insert"]


@dataclass(frozen=True)
class Word:
    """A word of the text or of the transcript, and what the alignment says of it."""

    text: str
    kind: Kind


def normalize(text: str) -> str:
    """Lower-cased, ASCII punctuation removed, whitespace collapsed: the words compared."""
    return " ".join(_PUNCT.sub("", text).lower().split())


def word_marks(text: str, transcript: str) -> tuple[list[Word], list[Word]]:
    """The text's words and the transcript's, normalized, each marked by jiwer's alignment:
    ``substitute`` on both sides, ``delete`` in the text (not heard), ``insert`` in the
    transcript (heard, not written), ``equal`` otherwise."""
    ref, hyp = normalize(text), normalize(transcript)
    if not ref or not hyp:
        return ([Word(w, "delete") for w in ref.split()],
                [Word(w, "insert") for w in hyp.split()])
    out = jiwer.process_words(ref, hyp)
    ref_words, hyp_words = out.references[0], out.hypotheses[0]
    marked_ref = [Word(w, "equal") for w in ref_words]
    marked_hyp = [Word(w, "equal") for w in hyp_words]
    for chunk in out.alignments[0]:
        if chunk.type in ("substitute", "delete"):
            for i in range(chunk.ref_start_idx, chunk.ref_end_idx):
                marked_ref[i] = Word(ref_words[i], chunk.type)
        if chunk.type in ("substitute", "insert"):
            for i in range(chunk.hyp_start_idx, chunk.hyp_end_idx):
                marked_hyp[i] = Word(hyp_words[i], chunk.type)
    return marked_ref, marked_hyp


# -- charts ---------------------------------------------------------------------------------

_CHART_LOCK = threading.Lock()


def _svg(draw: Callable[[Axes], None]) -> bytes:
    from matplotlib.figure import Figure  # imported on the first chart (it takes a while)

    with _CHART_LOCK:
        fig = Figure(figsize=(8, 4), dpi=96, layout="constrained")
        draw(fig.add_subplot())
        buf = io.BytesIO()
        fig.savefig(buf, format="svg", metadata={"Date": None})
        return buf.getvalue()


def weights_chart(data: EpochWeights) -> bytes:
    """The weights of the uids of the highest latest weights over the epochs, as SVG (drawn
    once per vector set: a validator's vector of an epoch never changes)."""
    top = sorted(data.weights, key=lambda uid: (-data.weights[uid][-1], uid))[:MAX_CHART_UIDS]
    return _weights_svg(data.validator, tuple(data.epochs),
                        tuple((uid, tuple(data.weights[uid])) for uid in top))


@lru_cache(maxsize=32)
def _weights_svg(validator: str | None, epochs: tuple[int, ...],
                 lines: tuple[tuple[int, tuple[float, ...]], ...]) -> bytes:
    def draw(ax: Axes) -> None:
        for uid, weights in lines:
            ax.plot(epochs, weights, marker="o", label=f"uid {uid}")
        ax.set_xlabel("epoch")
        ax.set_ylabel("weight")
        ax.set_title(f"weights of {validator or 'no validator yet'}")
        if epochs:
            ax.set_xticks(epochs)
        if lines:
            ax.legend(loc="upper left", fontsize="small", ncols=2)

    return _svg(draw)


def scores_chart(view: MinerView) -> bytes:
    """A uid's scored submissions' totals by block, as SVG."""
    return _scores_svg(view.uid, tuple(sorted(
        (s.block, s.score) for s in view.submissions
        if s.score is not None and s.block is not None)))


@lru_cache(maxsize=256)
def _scores_svg(uid: int, scored: tuple[tuple[int, float], ...]) -> bytes:
    def draw(ax: Axes) -> None:
        ax.plot([b for b, _ in scored], [v for _, v in scored], marker="o")
        ax.set_xlabel("block")
        ax.set_ylabel("score")
        ax.set_ylim(0, 1)
        ax.set_title(f"uid {uid}: scores of its submissions")

    return _svg(draw)


SVG = "image/svg+xml"


# -- routes ---------------------------------------------------------------------------------


@pages.get("", response_class=HTMLResponse)
def leaderboard(request: Request) -> HTMLResponse:
    """The minerboard, ranked."""
    rows = _board(request).rows()
    epoch = next((r.epoch for r in rows if r.epoch is not None), None)
    return templates.TemplateResponse(request, "board.html", {
        "title": "Leaderboard", "rows": rows, "epoch": epoch})


@pages.get("/submissions/{hash_}", response_class=HTMLResponse)
def submission(request: Request, hash_: str) -> HTMLResponse:
    """One submission, its score and its samples."""
    canonical = _canonical_hash(hash_)
    view = _board(request).submission(canonical)
    if view is None:
        raise PageError(404, "No such submission",
                        f"No submission has the hash {canonical}: it was never submitted, or "
                        "not yet read from the log.")
    marks = {s.index: word_marks(s.text, s.transcription) for s in view.samples
             if s.transcription is not None}
    return templates.TemplateResponse(request, "submission.html", {
        "title": f"Submission {view.repo or canonical}", "s": view, "marks": marks,
        "clip_names": CLIPS})


@pages.get("/miners/{uid}", response_class=HTMLResponse)
def miner(request: Request, uid: str) -> HTMLResponse:
    """One uid's submissions over time."""
    view = _board(request).miner(_uid(uid))
    if view is None:
        raise PageError(404, "No such miner", f"No miner holds uid {uid} and none submitted "
                        "under it.")
    return templates.TemplateResponse(request, "miner.html", {
        "title": f"Miner uid {view.uid}", "m": view,
        "scored": any(s.score is not None for s in view.submissions)})


@pages.get("/miners/{uid}/scores.svg")
def miner_chart(request: Request, uid: str) -> Response:
    """The chart of a uid's scores."""
    view = _board(request).miner(_uid(uid))
    if view is None:
        raise PageError(404, "No such miner", f"No miner holds uid {uid}.")
    return Response(scores_chart(view), media_type=SVG)


Epochs = Annotated[int, Query(ge=1, le=MAX_EPOCHS)]


@pages.get("/weights", response_class=HTMLResponse)
def weights(request: Request, epochs: Epochs = 10) -> HTMLResponse:
    """The last epochs' weights per uid."""
    data = _board(request).epochs(epochs)
    uids = sorted(data.weights, key=lambda uid: (-data.weights[uid][-1], uid))
    return templates.TemplateResponse(request, "weights.html", {
        "title": "Weights", "d": data, "uids": uids, "count": epochs})


@pages.get("/weights.svg")
def weights_svg(request: Request, epochs: Epochs = 10) -> Response:
    """The weights chart."""
    return Response(weights_chart(_board(request).epochs(epochs)), media_type=SVG)


@pages.get("/audio/{score_event_id}/{index}/{name}")
def audio(request: Request, score_event_id: str, index: str, name: str) -> Response:
    """A clip (``generated.opus``, ``reference.mp3``…) of a score's sample; byte ranges are
    answered (206), as players ask for them."""
    clip, _, fmt = name.partition(".")
    if (not _EVENT_ID.match(score_event_id) or not index.isdigit()
            or not 0 <= int(index) < MAX_SAMPLES or clip not in CLIPS
            or fmt not in MEDIA_TYPES):
        raise PageError(404, "No such clip", "A clip is /board/audio/<score event id>/<sample "
                        "index>/<generated|reference>.<opus|mp3>.")
    found = _board(request).audio(score_event_id, int(index), clip, _format(fmt))
    if found is None:
        raise PageError(404, "No such clip",
                        f"Score {score_event_id} has no {clip} clip {index} in {fmt}.")
    if found.data is None:
        raise PageError(410, "No longer kept",
                        f"The {clip} clip of sample {index} is no longer kept: only the newest "
                        "submissions' audio is (SPEECHSTREAM_SINK_AUDIO_KEEP_PER_UID).")
    return _ranged(request, found.data, MEDIA_TYPES[fmt])


def _format(fmt: str) -> AudioFormat:
    return "opus" if fmt == "opus" else "mp3"


def _uid(value: str) -> int:
    if not value.isdigit() or not 0 <= int(value) < MAX_UIDS:
        raise PageError(404, "No such miner",
                        f"{value[:40]!r} is not a uid (0 to {MAX_UIDS - 1}).")
    return int(value)


def _ranged(request: Request, data: bytes, media_type: str) -> Response:
    headers = {"Accept-Ranges": "bytes", "Cache-Control": "public, max-age=86400",
               "X-Content-Type-Options": "nosniff"}
    wanted = request.headers.get("range")
    match = _RANGE.match(wanted.strip()) if wanted else None
    if match is None or not (match.group(1) or match.group(2)):
        return Response(data, media_type=media_type, headers=headers)
    size = len(data)
    if match.group(1):
        start = int(match.group(1))
        end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
    else:  # the last N bytes
        start, end = max(0, size - int(match.group(2))), size - 1
    if start >= size or start > end:
        return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"})
    return Response(data[start:end + 1], status_code=206, media_type=media_type,
                    headers={**headers, "Content-Range": f"bytes {start}-{end}/{size}"})
