"""The leaderboard pages as a person sees them: Debian's Chromium, headless, driven through its
WebDriver (chromium-driver) by Selenium; the API served by uvicorn over a real database."""

from __future__ import annotations

import base64
import os
import shutil
import string
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import jiwer
import uvicorn
from prometheus_client import CollectorRegistry
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from api.app import create_app
from api.settings import ApiSettings
from api.store import PostgresStore
from tests.conftest import pick_ports
from tests.unit.api.test_api import FakePublisher

ARTIFACTS = Path(os.environ.get("SPEECHSTREAM_TEST_ARTIFACTS_DIR", "build/test-artifacts"))
"""Where the pages' screenshots are kept (CI keeps the folder)."""
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@contextmanager
def served(conninfo: str) -> Iterator[str]:
    """The API over ``conninfo`` on a free port; its base URL."""
    port, = pick_ports(1)
    app = create_app(ApiSettings(), PostgresStore(conninfo), FakePublisher(),
                     CollectorRegistry())
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, name="pages-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the API did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def chromium(width: int = 1280, height: int = 900) -> Iterator[webdriver.Chrome]:
    """Headless Chromium through chromium-driver (no driver is downloaded)."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--mute-audio", f"--window-size={width},{height}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver: webdriver.Chrome, name: str) -> Path:
    """A full-page screenshot under :data:`ARTIFACTS` (the window grown to the page)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": int(size["width"]), "height": min(int(size["height"]), 16_000),
        "deviceScaleFactor": 1, "mobile": False})
    try:
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True})
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    path = ARTIFACTS / f"{name}.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


_PUNCT = str.maketrans("", "", string.punctuation)


def changed_words(text: str, heard: str) -> list[str]:
    """The transcript's words jiwer's alignment finds substituted or inserted (words compared
    lower-cased without ASCII punctuation, as the page says)."""
    ref = " ".join(text.translate(_PUNCT).lower().split())
    hyp = " ".join(heard.translate(_PUNCT).lower().split())
    if not hyp:
        return []
    if not ref:
        return hyp.split()
    out = jiwer.process_words(ref, hyp)
    words = out.hypotheses[0]
    return [words[i] for c in out.alignments[0] if c.type in ("substitute", "insert")
            for i in range(c.hyp_start_idx, c.hyp_end_idx)]


_DURATIONS = """
const done = arguments[arguments.length - 1];
const audio = Array.from(document.querySelectorAll('audio'));
Promise.all(audio.map(a => new Promise(resolve => {
  if (a.readyState >= 1) return resolve();
  a.addEventListener('loadedmetadata', () => resolve(), {once: true});
  a.addEventListener('error', () => resolve(), {once: true});
  a.load();
}))).then(() => done(audio.map(a => ({
  src: a.currentSrc, duration: a.duration, expected: parseFloat(a.dataset.duration),
  error: a.error ? a.error.code : null}))));
"""


def check_pages(base: str, name: str) -> dict[str, Path]:
    """Open the leaderboard, check its rows are ``/minerboard``'s; open each submission page
    that has clips, check every audio element loads with the sample's duration and that the
    marked words are jiwer's; screenshot each page. The screenshots' paths."""
    shots: dict[str, Path] = {}
    minerboard = httpx.get(f"{base}/minerboard", timeout=10).json()
    with chromium() as driver:
        driver.set_script_timeout(60)
        driver.get(f"{base}/board")
        assert driver.title.startswith("Leaderboard")
        rows = driver.find_elements(By.CSS_SELECTOR, "#leaderboard tbody tr")
        seen = {(int(r.get_attribute("data-uid") or -1), r.get_attribute("data-hash"))
                for r in rows}
        assert seen == {(e["uid"], e["hash"]) for e in minerboard}, (seen, minerboard)
        for row in rows:
            entry = next(e for e in minerboard if e["hash"] == row.get_attribute("data-hash"))
            shown = row.find_element(By.CSS_SELECTOR, ".score").text
            expected = entry["total_score"]
            assert shown == (f"{expected:.4f}" if expected is not None else "–")
        shots["leaderboard"] = screenshot(driver, f"{name}-leaderboard")
        links = [a.get_attribute("href") or "" for a in
                 driver.find_elements(By.CSS_SELECTOR, "#leaderboard a.repo")]
        heard = 0
        for link in links:
            driver.get(link)
            players = driver.find_elements(By.TAG_NAME, "audio")
            if not players:
                continue
            durations = driver.execute_async_script(_DURATIONS)
            for d in durations:
                assert d["error"] is None, d
                assert abs(d["duration"] - d["expected"]) <= 0.05 + 0.01 * d["expected"], d
            heard += len(durations)
            for section in driver.find_elements(By.CSS_SELECTOR, "section.sample"):
                text = section.find_element(By.CSS_SELECTOR, ".text").text.removeprefix(
                    "Text:").strip()
                transcript = section.find_element(By.CSS_SELECTOR, ".transcript")
                marked = [m.text for m in transcript.find_elements(By.TAG_NAME, "mark")]
                spoken = transcript.text.removeprefix("Heard:").strip()
                if spoken in ("no transcript", "nothing heard"):
                    assert marked == []
                    continue
                assert marked == changed_words(text, spoken), (text, spoken, marked)
            if "submission" not in shots:
                shots["submission"] = screenshot(driver, f"{name}-submission")
        assert heard, "no submission page had a clip"
        driver.get(f"{base}/board/weights")
        shots["weights"] = screenshot(driver, f"{name}-weights")
        driver.get(f"{base}/board/submissions/123456789")
        assert "No such submission" in driver.title

        # From the keyboard: the first Tab reaches the skip link, which leads to the content;
        # every player can be reached with Tab (native controls, none taken out of the order).
        driver.get(links[0])
        body = driver.find_element(By.TAG_NAME, "body")
        body.send_keys(Keys.TAB)
        assert driver.switch_to.active_element.get_attribute("class") == "skip"
        assert all(a.get_attribute("tabindex") in (None, "", "0")
                   for a in driver.find_elements(By.TAG_NAME, "audio"))
    # On a phone's width (390 CSS pixels): no page is wider than the screen (tables scroll
    # in their own region).
    with chromium(390, 844) as phone:
        for link in (f"{base}/board", links[0], f"{base}/board/weights"):
            phone.get(link)
            wide = phone.execute_script(
                "return [document.documentElement.scrollWidth, window.innerWidth]")
            assert wide[0] <= wide[1] + 1, (link, wide)
            if link == links[0]:
                shots["phone"] = screenshot(phone, f"{name}-phone-submission")
    return shots
